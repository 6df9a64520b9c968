//! Open-loop scheduling: operations are due at fixed intended times and latency counts from them.
//!
//! The load loop runs on tokio's clock, so the tests below run it with that clock paused: time moves only
//! when every task waits, straight to the next timer. A run's latencies and counts are then a function of
//! the schedule and the operations' service times, the same on any machine under any load, and the tests
//! assert them exactly (up to the histogram's 3 significant digits) instead of against wall-clock bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kassa_bench::errors::OpError;
use kassa_bench::load::{self, Op, OpOutcome, RunSpec, due_before, intended_offset};

#[test]
fn intended_times_are_evenly_spaced() {
    let rate = 1000.0;
    for i in 0..5000u64 {
        let a = intended_offset(i, rate);
        let b = intended_offset(i + 1, rate);
        let gap = b - a;
        assert!(gap >= Duration::from_nanos(999_999) && gap <= Duration::from_nanos(1_000_001), "gap {gap:?} at {i}");
    }
    assert_eq!(intended_offset(2500, 1000.0), Duration::from_millis(2500));
    assert_eq!(intended_offset(3, 0.0), Duration::MAX);
}

#[test]
fn due_count_matches_the_schedule() {
    assert_eq!(due_before(Duration::from_secs(2), 500.0), 1000);
    assert_eq!(due_before(Duration::from_millis(1), 500.0), 1);
    assert_eq!(due_before(Duration::ZERO, 500.0), 0);
    assert_eq!(due_before(Duration::from_secs(1), 0.0), 0);
    // Every operation due before the end is counted exactly once.
    let end = Duration::from_millis(1234);
    let n = due_before(end, 777.0);
    assert!(intended_offset(n - 1, 777.0) < end && intended_offset(n, 777.0) >= end);
}

/// An operation that takes a fixed time (a server that serves one request every `service`).
struct Slow {
    service: Duration,
    calls: Arc<AtomicU64>,
}

impl Op for Slow {
    async fn run(&mut self) -> OpOutcome {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.service).await;
        OpOutcome::ok(1)
    }
}

/// A histogram figure equals `expected_us` to its 3 significant digits.
fn about(value_us: u64, expected_us: u64) -> bool {
    value_us.abs_diff(expected_us) * 1000 <= expected_us
}

#[tokio::test(start_paused = true)]
async fn open_loop_charges_queueing_to_the_server() {
    // One connection, 200 operations/s due (one every 5 ms), each takes 20 ms: the server can do 50/s, so
    // a queue builds. Operation k starts when k-1 is done, at 20k ms, and finishes at 20(k+1) ms, 20 + 15k
    // ms after it was due. New operations start until the 300 ms grace after the 1 s window is over: the
    // last is k = 65 (started at 1300 ms), so 66 of the 200 due operations run and 134 are missed.
    let calls = Arc::new(AtomicU64::new(0));
    let spec = RunSpec { grace: Duration::from_millis(300), ..RunSpec::open(200.0, Duration::ZERO, Duration::from_secs(1)) };
    let stats = load::run(&spec, vec![Slow { service: Duration::from_millis(20), calls: calls.clone() }]).await;
    assert_eq!((stats.intended, stats.ops_ok, stats.missed, stats.ops_failed), (200, 66, 134, 0));
    assert_eq!(calls.load(Ordering::Relaxed), 66);
    let (lat, service) = (stats.latencies.summary(), stats.service.summary());
    assert_eq!((lat.count, service.count), (66, 66));
    // The server's share stays 20 ms...
    assert!(about(service.p50_us, 20_000) && about(service.max_us, 20_000), "service {service:?}");
    // ...but latency from the intended send time carries the queue: 20 ms for the first, 995 ms for the last.
    assert!(about(lat.max_us, 995_000), "latency {lat:?}");
    assert!(about(lat.p50_us, 20_000 + 15_000 * 32), "latency {lat:?}");
}

#[tokio::test(start_paused = true)]
async fn open_loop_keeps_the_rate_when_the_server_keeps_up() {
    // Four connections, 400 operations/s due (one every 2.5 ms), each takes 1 ms: a connection is always
    // free when an operation falls due, so each finishes 1 ms after it was due (plus the timer's
    // millisecond rounding of the half-millisecond due times), and none is missed.
    let calls = Arc::new(AtomicU64::new(0));
    let workers = (0..4).map(|_| Slow { service: Duration::from_millis(1), calls: calls.clone() }).collect();
    let stats = load::run(&RunSpec::open(400.0, Duration::from_millis(100), Duration::from_secs(1)), workers).await;
    assert_eq!((stats.intended, stats.ops_ok, stats.missed, stats.ops_failed), (400, 400, 0, 0));
    // The 40 operations due in the 100 ms warm-up ran too, but were not counted.
    assert_eq!(calls.load(Ordering::Relaxed), 440);
    let (lat, service) = (stats.latencies.summary(), stats.service.summary());
    assert!(about(service.p50_us, 1_000) && about(service.max_us, 1_000), "service {service:?}");
    // No queue: latency is the service time plus at most the half millisecond of rounding.
    assert!(lat.p50_us >= 1_000 && lat.max_us <= 1_501, "latency {lat:?}");
}

#[tokio::test(start_paused = true)]
async fn closed_loop_measures_each_operation_and_counts_errors_by_kind() {
    struct Flaky {
        n: u64,
    }
    impl Op for Flaky {
        async fn run(&mut self) -> OpOutcome {
            self.n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            if self.n.is_multiple_of(4) { OpOutcome::failed(1, OpError::Status(409)) } else { OpOutcome::ok(1) }
        }
    }
    // Two connections, back to back, 2 ms an operation, for 500 ms: each finishes 250 operations inside
    // the window, every fourth of them (62) a 409.
    let stats = load::run(&RunSpec::closed(Duration::ZERO, Duration::from_millis(500)), vec![Flaky { n: 0 }, Flaky { n: 0 }]).await;
    assert_eq!((stats.ops_ok, stats.ops_failed, stats.requests), (2 * 188, 2 * 62, 2 * 250));
    assert_eq!(stats.errors.counts.get("status_409").copied(), Some(stats.ops_failed));
    assert_eq!(stats.errors.counts.len(), 1, "{:?}", stats.errors.counts);
    // Only successes carry a latency, each the 2 ms it took.
    let lat = stats.latencies.summary();
    assert_eq!(lat.count, stats.ops_ok);
    assert!(about(lat.p50_us, 2_000) && about(lat.max_us, 2_000), "{lat:?}");
    assert_eq!(stats.ops_per_s(), 376.0 / 0.5);
}
