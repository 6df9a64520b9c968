//! The seam to notification senders. The engine never delivers a notification itself: sending one on a
//! channel Kassa delivers (`EngineConfig::delivered_channels`) records it `sent` with a delivery id and a
//! due attempt, and the shard releases a [`DeliveryCall`] into the channel given as
//! `EngineConfig::deliveries` once that record is durable. Whoever drains it (the `kassa-delivery` crate)
//! makes the attempt off the shard threads and answers with a command (`cmd::delivery_outcome`). The
//! engine records every attempt, schedules the next one with exponential backoff and jitter, and after
//! the channel's last attempt leaves the notification `failed` (its dead letter); `retry` starts a new
//! delivery. An attempt unanswered after a crash, or after `delivery_redrive_after`, is made again under
//! the same delivery id and attempt number, so a receiver can tell a repeat.

use std::time::Duration;

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::Notification;

/// One attempt at delivering a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryCall {
    /// The notification as it stands when the attempt is due.
    pub notification: Notification,
    /// Stable across the attempts of one delivery (`X-Kassa-Delivery`).
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// The sending side of the channel the shards release delivery calls into. Never blocks a shard: a call
/// that finds it full is made again later.
pub type DeliveryCallSender = tokio::sync::mpsc::Sender<DeliveryCall>;

/// What one attempt came to.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The receiver took it (an HTTP 2xx, an SMTP server's acceptance).
    Delivered,
    /// It did not: `retryable` when a later attempt may succeed (a timeout, a 5xx), not when the receiver
    /// refused it for good (a 4xx, a notification without a recipient).
    Failed { error: String, retryable: bool },
}

/// How a channel's deliveries are tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub channel: String,
    /// Attempts per delivery before it is left `failed`.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one, plus up to a quarter of it
    /// at random.
    pub backoff: Duration,
}
