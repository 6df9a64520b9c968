//! Figures of the provider calls, for `/metrics`: per provider, calls by operation and outcome and their
//! latency, named as the old payment service named its Stripe figures
//! (`payment_service_stripe_api_calls_total{operation,status}`,
//! `payment_service_stripe_api_duration_seconds{operation}`), one pair per provider.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

type Calls = Family<[(&'static str, String); 2], Counter>;
type Durations = Family<[(&'static str, String); 1], Histogram>;

struct ProviderFigures {
    calls: Calls,
    durations: Durations,
}

/// The figures of every provider the runner calls.
pub struct ProviderMetrics {
    providers: BTreeMap<String, ProviderFigures>,
}

impl std::fmt::Debug for ProviderMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderMetrics").field("providers", &self.providers.keys().collect::<Vec<_>>()).finish()
    }
}

impl ProviderMetrics {
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> ProviderMetrics {
        let histogram = || Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let providers = names
            .into_iter()
            .map(|name| {
                let durations = Durations::new_with_constructor(histogram as fn() -> Histogram);
                (name.to_string(), ProviderFigures { calls: Calls::default(), durations })
            })
            .collect();
        ProviderMetrics { providers }
    }

    /// One call to `provider`'s `operation` (`charge`, `void`) that ended in `status` after `took`.
    pub(crate) fn record(&self, provider: &str, operation: &'static str, status: &str, took: Duration) {
        let Some(p) = self.providers.get(provider) else { return };
        p.calls.get_or_create(&[("operation", operation.to_string()), ("status", status.to_string())]).inc();
        p.durations.get_or_create(&[("operation", operation.to_string())]).observe(took.as_secs_f64());
    }

    /// How many calls to `provider`'s `operation` ended in `status`.
    pub fn calls(&self, provider: &str, operation: &'static str, status: &str) -> u64 {
        self.providers
            .get(provider)
            .map_or(0, |p| p.calls.get_or_create(&[("operation", operation.to_string()), ("status", status.to_string())]).get())
    }
}

/// [`ProviderMetrics`] as a collector of the gateway's registry.
#[derive(Debug)]
pub struct ProviderCollector(pub std::sync::Arc<ProviderMetrics>);

impl Collector for ProviderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, p) in &self.0.providers {
            let calls = format!("payment_service_{name}_api_calls");
            let help = format!("Calls to the {name} payment provider, by operation and outcome");
            p.calls.encode(encoder.encode_descriptor(&calls, &help, None, p.calls.metric_type())?)?;
            let durations = format!("payment_service_{name}_api_duration_seconds");
            let help = format!("How long calls to the {name} payment provider took, by operation");
            p.durations.encode(encoder.encode_descriptor(&durations, &help, None, p.durations.metric_type())?)?;
        }
        Ok(())
    }
}
