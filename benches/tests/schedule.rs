//! Open-loop scheduling: operations are due at fixed intended times and latency counts from them.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_charges_queueing_to_the_server() {
    // One connection, 200 operations/s due, each takes 20 ms: the server can do 50/s, so a queue builds
    // and operations finish ever later than they were due. Latency from the intended time must show it.
    let calls = Arc::new(AtomicU64::new(0));
    let spec = RunSpec { grace: Duration::from_millis(300), ..RunSpec::open(200.0, Duration::ZERO, Duration::from_secs(1)) };
    let stats = load::run(&spec, vec![Slow { service: Duration::from_millis(20), calls: calls.clone() }]).await;
    let lat = stats.latencies.summary();
    let service = stats.service.summary();
    assert_eq!(stats.intended, 200);
    // Service time stays about 20 ms...
    assert!(service.p50_us >= 20_000 && service.p50_us < 40_000, "service {service:?}");
    // ...but the last operations were due up to a second before they were served.
    assert!(lat.max_us >= 500_000, "latency from intended send {lat:?}");
    assert!(lat.p50_us > 2 * service.p50_us, "latency {lat:?} vs service {service:?}");
    // Not every due operation could even be started before the grace period ran out.
    assert!(stats.missed > 0, "missed {}", stats.missed);
    assert_eq!(stats.ops_ok + stats.missed, stats.intended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_the_rate_when_the_server_keeps_up() {
    let calls = Arc::new(AtomicU64::new(0));
    let workers = (0..4).map(|_| Slow { service: Duration::from_millis(1), calls: calls.clone() }).collect();
    let stats = load::run(&RunSpec::open(400.0, Duration::from_millis(100), Duration::from_secs(1)), workers).await;
    assert_eq!(stats.intended, 400);
    assert_eq!(stats.missed, 0);
    assert_eq!(stats.ops_ok, 400);
    // Warm-up operations ran too, but were not counted.
    assert!(calls.load(Ordering::Relaxed) >= 440, "calls {}", calls.load(Ordering::Relaxed));
    let lat = stats.latencies.summary();
    // 1 ms service plus at most a few ms of timer slack; nowhere near a queue.
    assert!(lat.p99_us < 20_000, "{lat:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let stats = load::run(&RunSpec::closed(Duration::ZERO, Duration::from_millis(500)), vec![Flaky { n: 0 }, Flaky { n: 0 }]).await;
    assert!(stats.ops_ok > 50, "{}", stats.ops_ok);
    assert_eq!(stats.errors.counts.get("status_409").copied(), Some(stats.ops_failed));
    assert!(stats.ops_failed * 2 >= stats.ops_ok / 3 - 2);
    assert_eq!(stats.requests, stats.ops_ok + stats.ops_failed);
    assert_eq!(stats.latencies.count(), stats.ops_ok);
    assert!(stats.latencies.summary().p50_us >= 2_000);
    let rate = stats.ops_per_s();
    assert!(rate > 100.0 && rate < 1000.0, "rate {rate}");
}
