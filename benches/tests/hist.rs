//! Histogram maths: percentiles, merging, clamping.

use std::time::Duration;

use kassa_bench::hist::{LATENCY_US_MAX, Latencies, LatencySummary};

fn within(value: u64, expected: u64, rel: f64) -> bool {
    (value as f64 - expected as f64).abs() <= expected as f64 * rel
}

#[test]
fn percentiles_of_a_uniform_ramp() {
    let mut h = Latencies::new();
    for us in 1..=100_000u64 {
        h.record_us(us);
    }
    let s = h.summary();
    assert_eq!(s.count, 100_000);
    // 3 significant digits: every figure within 0.1 %.
    assert!(within(s.p50_us, 50_000, 0.001), "{s:?}");
    assert!(within(s.p99_us, 99_000, 0.001), "{s:?}");
    assert!(within(s.p999_us, 99_900, 0.001), "{s:?}");
    assert!(within(s.max_us, 100_000, 0.001), "{s:?}");
    assert!(within(s.mean_us, 50_000, 0.001), "{s:?}");
}

#[test]
fn a_tail_shows_in_p99_9_but_not_p50() {
    let mut h = Latencies::new();
    for _ in 0..9_990 {
        h.record(Duration::from_micros(200));
    }
    for _ in 0..10 {
        h.record(Duration::from_millis(50));
    }
    let s = h.summary();
    assert!(within(s.p50_us, 200, 0.001), "{s:?}");
    assert!(within(s.p99_us, 200, 0.001), "{s:?}");
    assert!(within(s.max_us, 50_000, 0.001), "{s:?}");
    // 10 of 10 000 samples are slow: the 99.9th percentile is the boundary, 99.95th is slow.
    assert!(s.p999_us <= 50_100 && s.p999_us >= 200, "{s:?}");
}

#[test]
fn merge_adds_counts_and_keeps_extremes() {
    let mut a = Latencies::new();
    let mut b = Latencies::new();
    for _ in 0..1000 {
        a.record_us(100);
        b.record_us(10_000);
    }
    a.merge(&b);
    let s = a.summary();
    assert_eq!(s.count, 2000);
    assert!(within(s.p50_us, 100, 0.001), "{s:?}");
    assert!(within(s.p99_us, 10_000, 0.001), "{s:?}");
    assert!(within(s.mean_us, 5_050, 0.002), "{s:?}");
}

#[test]
fn out_of_range_values_are_clamped_not_lost() {
    let mut h = Latencies::new();
    h.record(Duration::ZERO);
    h.record(Duration::from_secs(3600));
    let s = h.summary();
    assert_eq!(s.count, 2);
    assert!(s.p50_us >= 1);
    assert!(within(s.max_us, LATENCY_US_MAX, 0.001), "{s:?}");
}

#[test]
fn empty_histogram_summarises_to_zeros() {
    assert_eq!(Latencies::new().summary(), LatencySummary::default());
}
