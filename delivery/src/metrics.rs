//! Figures of the deliveries, for `/metrics`, under the names the old notification service meant to
//! register (`notification_delivered_total`, `notification_failed_total`), by channel, with every attempt
//! and its latency beside them.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

type ByChannel = Family<[(&'static str, String); 1], Counter>;
type Attempts = Family<[(&'static str, String); 2], Counter>;
type Durations = Family<[(&'static str, String); 1], Histogram>;

pub struct DeliveryMetrics {
    attempts: Attempts,
    durations: Durations,
    delivered: ByChannel,
    failed: ByChannel,
}

impl std::fmt::Debug for DeliveryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryMetrics").finish_non_exhaustive()
    }
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        let histogram = || Histogram::new(exponential_buckets(0.001, 2.0, 16));
        DeliveryMetrics {
            attempts: Attempts::default(),
            durations: Durations::new_with_constructor(histogram as fn() -> Histogram),
            delivered: ByChannel::default(),
            failed: ByChannel::default(),
        }
    }
}

impl DeliveryMetrics {
    /// One attempt on `channel` that ended in `outcome` (`delivered`, `retryable`, `refused`) after `took`.
    pub(crate) fn attempt(&self, channel: &str, outcome: &'static str, took: Duration) {
        self.attempts.get_or_create(&[("channel", channel.to_string()), ("outcome", outcome.to_string())]).inc();
        self.durations.get_or_create(&[("channel", channel.to_string())]).observe(took.as_secs_f64());
    }

    /// A notification the engine recorded with `status` after an attempt's outcome.
    pub(crate) fn settled(&self, channel: &str, status: &str) {
        match status {
            "delivered" => self.delivered.get_or_create(&[("channel", channel.to_string())]).inc(),
            "failed" => self.failed.get_or_create(&[("channel", channel.to_string())]).inc(),
            _ => 0,
        };
    }

    /// How many attempts on `channel` ended in `outcome`.
    pub fn attempts(&self, channel: &str, outcome: &'static str) -> u64 {
        self.attempts.get_or_create(&[("channel", channel.to_string()), ("outcome", outcome.to_string())]).get()
    }
}

/// [`DeliveryMetrics`] as a collector of the gateway's registry.
#[derive(Debug)]
pub struct DeliveryCollector(pub std::sync::Arc<DeliveryMetrics>);

impl Collector for DeliveryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let help = "Notifications delivered, by channel";
        m.delivered.encode(encoder.encode_descriptor("notification_delivered", help, None, m.delivered.metric_type())?)?;
        let help = "Notifications left failed after their last delivery attempt or a refusal, by channel";
        m.failed.encode(encoder.encode_descriptor("notification_failed", help, None, m.failed.metric_type())?)?;
        let help = "Delivery attempts, by channel and outcome (delivered, retryable, refused)";
        m.attempts.encode(encoder.encode_descriptor("notification_delivery_attempts", help, None, m.attempts.metric_type())?)?;
        let help = "How long delivery attempts took, by channel";
        m.durations.encode(encoder.encode_descriptor(
            "notification_delivery_duration_seconds",
            help,
            None,
            m.durations.metric_type(),
        )?)?;
        Ok(())
    }
}
