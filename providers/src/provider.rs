//! The one trait every payment provider implements.

use kassa_engine::{ChargeCall, ProviderNotice, RefundCall, WebhookRefusal};

/// A charge the provider made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The provider's id of it (`pi_…`), kept as the payment's `provider_id`.
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the charge: final for this attempt.
    #[error("declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// The provider did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The provider took the request and finishes it later (its webhook says how).
    #[error("pending: {0}")]
    Pending(String),
    /// The provider could not be reached or failed on its side; the same call may be made again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A payment provider. Every call carries the idempotency key of the step it belongs to, and the
/// provider must treat a repeated key as the same request: that is what makes re-driving safe.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The name payments give as their `provider`.
    fn name(&self) -> &str;

    /// Authorises and captures `call.amount` with `call.token`.
    async fn charge(&self, call: &ChargeCall) -> Result<Charge, ProviderError>;

    /// Settles a charge whose answer never came: cancels whatever `call` may have started, so that nothing
    /// is taken (`None`, also when the provider never saw it), or, if the money was taken after all, says
    /// so (`Some`).
    async fn void(&self, call: &ChargeCall) -> Result<Option<Charge>, ProviderError>;

    /// Gives `call.amount` of the charge `call.charge_id` back; answers the provider's id of the refund.
    async fn refund(&self, call: &RefundCall) -> Result<String, ProviderError>;

    /// Checks a webhook delivery from the provider (its headers and exact body, received at `now_secs`)
    /// and says what it settles. A provider that sends no webhooks refuses every one.
    fn webhook(&self, headers: &reqwest::header::HeaderMap, body: &[u8], now_secs: i64) -> Result<ProviderNotice, WebhookRefusal> {
        let _ = (headers, body, now_secs);
        Err(WebhookRefusal::UnknownProvider)
    }
}
