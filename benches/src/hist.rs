//! Latency recording: an HdrHistogram of microseconds, and the summary the reports carry.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest latency the histogram resolves; larger values are clamped (and still count).
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// A latency histogram in microseconds with 3 significant digits.
#[derive(Clone, Debug)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Latencies {
        let hist = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid");
        Latencies { hist }
    }

    /// Records one latency; below 1 µs counts as 1 µs, above the bound as the bound.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
        self.hist.saturating_record(us);
    }

    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            p50_us: self.hist.value_at_quantile(0.50),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            mean_us: self.hist.mean().round() as u64,
        }
    }
}

/// Percentiles of one measurement, in microseconds (0 everywhere when nothing was recorded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}
