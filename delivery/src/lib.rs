//! Kassa's notification senders. The engine never delivers a notification from a shard: sending one on a
//! channel configured here records it `sent` with a delivery id, and the shard releases a
//! [`DeliveryCall`](kassa_engine::DeliveryCall) into the channel made by [`channel`] once that record is
//! durable. [`start`] makes the attempts on a thread and runtime of their own, each channel behind the one
//! [`Sender`] trait, with a timeout and a bounded number in flight, and reports every outcome back to the
//! engine as a command; the engine schedules the retries and keeps the record of every attempt.
//!
//! Channels: `webhook` (an HMAC-signed HTTP POST of the notification's JSON), `email` (SMTP with
//! STARTTLS), `sms` and `push` (the same HTTP POST to their own endpoints). `in_app` needs no sender.

mod config;
mod http;
mod metrics;
mod runner;
mod sender;
mod smtp;

pub use config::{HttpChannelConfig, NotificationsConfig, SmtpConfig};
pub use http::{HttpSender, signature};
pub use metrics::{DeliveryCollector, DeliveryMetrics};
pub use runner::{Deliveries, DeliveryIntake, channel, start};
pub use sender::{Render, Sender};
pub use smtp::SmtpSender;
