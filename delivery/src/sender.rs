//! The one trait every channel's sender implements.

use std::sync::Arc;

use kassa_engine::{DeliveryCall, DeliveryResult, Notification};

/// Writes a notification as the body a receiver gets: the API's JSON of it, so that a webhook receiver
/// reads what `GET /api/v1/notifications/{id}` answers.
pub type Render = Arc<dyn Fn(&Notification) -> Vec<u8> + Send + Sync>;

/// Delivers a channel's notifications. One call is one attempt; the runner bounds how long it may take,
/// the engine decides whether there is another.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    /// The notification channel it delivers (`webhook`, `email`, `sms`, `push`).
    fn channel(&self) -> &str;

    /// Makes one attempt: [`DeliveryResult::Delivered`] when the receiver took it, a retryable failure
    /// when a later attempt may succeed, a final one when the receiver refused it for good.
    async fn deliver(&self, call: &DeliveryCall) -> DeliveryResult;
}
