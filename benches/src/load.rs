//! The load loop: closed-loop (each worker sends as soon as its previous operation finished) and open-loop
//! (operations are due at a fixed arrival rate; latency is measured from the time an operation was DUE, so
//! a slow server cannot hide its queueing by slowing the generator down — no coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::errors::{ErrorCounts, OpError};
use crate::hist::Latencies;

/// What one operation did: how many requests it sent, and whether it failed.
#[derive(Debug)]
pub struct OpOutcome {
    pub requests: u32,
    pub error: Option<OpError>,
}

impl OpOutcome {
    pub fn ok(requests: u32) -> OpOutcome {
        OpOutcome { requests, error: None }
    }
    pub fn failed(requests: u32, error: OpError) -> OpOutcome {
        OpOutcome { requests, error: Some(error) }
    }
}

/// One load worker: owns its connection and issues one operation at a time.
pub trait Op: Send + 'static {
    fn run(&mut self) -> impl Future<Output = OpOutcome> + Send;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Closed,
    /// A fixed arrival rate for all workers together.
    Open {
        rate_per_s: f64,
    },
}

#[derive(Clone, Debug)]
pub struct RunSpec {
    pub mode: Mode,
    /// Operations during the warm-up are run but not counted.
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop: how long after the end late operations may still be started.
    pub grace: Duration,
}

impl RunSpec {
    pub fn closed(warmup: Duration, duration: Duration) -> RunSpec {
        RunSpec { mode: Mode::Closed, warmup, duration, grace: Duration::from_secs(2) }
    }
    pub fn open(rate_per_s: f64, warmup: Duration, duration: Duration) -> RunSpec {
        RunSpec { mode: Mode::Open { rate_per_s }, warmup, duration, grace: Duration::from_secs(2) }
    }
}

/// The merged result of all workers of one run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub ops_ok: u64,
    pub ops_failed: u64,
    pub requests: u64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Closed loop: from start to finish of each operation. Open loop: from its intended send time.
    pub latencies: Latencies,
    /// Open loop only: from the actual send to the finish (the server's share, without queueing in the
    /// generator). Equal to `latencies` in closed loop, so left empty there.
    pub service: Latencies,
    pub errors: ErrorCounts,
    /// Open loop: operations due in the measured window.
    pub intended: u64,
    /// Open loop: due operations never started (the generator fell further behind than the grace period).
    pub missed: u64,
    /// Workers whose operations were all failures (a broken connection setup shows here).
    pub workers: usize,
}

impl RunStats {
    pub fn ops_per_s(&self) -> f64 {
        if self.window_s > 0.0 { self.ops_ok as f64 / self.window_s } else { 0.0 }
    }
    pub fn requests_per_s(&self) -> f64 {
        if self.window_s > 0.0 { self.requests as f64 / self.window_s } else { 0.0 }
    }

    fn merge(&mut self, other: &RunStats) {
        self.ops_ok += other.ops_ok;
        self.ops_failed += other.ops_failed;
        self.requests += other.requests;
        self.latencies.merge(&other.latencies);
        self.service.merge(&other.service);
        self.errors.merge(&other.errors);
    }
}

/// When operation `index` of an open-loop schedule is due, counted from the schedule's start.
pub fn intended_offset(index: u64, rate_per_s: f64) -> Duration {
    if rate_per_s <= 0.0 || !rate_per_s.is_finite() {
        return Duration::MAX;
    }
    Duration::from_secs_f64(index as f64 / rate_per_s)
}

/// How many operations of an open-loop schedule fall due before `elapsed`.
pub fn due_before(elapsed: Duration, rate_per_s: f64) -> u64 {
    if rate_per_s <= 0.0 || !rate_per_s.is_finite() {
        return 0;
    }
    // Start from the float estimate, then settle on exactly the indices whose intended time is before
    // `elapsed` (rounding must agree with `intended_offset`, which decides what workers count).
    let mut n = (elapsed.as_secs_f64() * rate_per_s).ceil() as u64;
    for _ in 0..4 {
        if n > 0 && intended_offset(n - 1, rate_per_s) >= elapsed {
            n -= 1;
        }
    }
    for _ in 0..4 {
        if intended_offset(n, rate_per_s) < elapsed {
            n += 1;
        }
    }
    n
}

/// Runs the workers under `spec` and merges their results.
pub async fn run<W: Op>(spec: &RunSpec, workers: Vec<W>) -> RunStats {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let next = Arc::new(AtomicU64::new(0));
    let n = workers.len();
    let mut handles = Vec::with_capacity(n);
    for worker in workers {
        let spec = spec.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            match spec.mode {
                Mode::Closed => closed_worker(worker, measure_from, end).await,
                Mode::Open { rate_per_s } => open_worker(worker, rate_per_s, start, measure_from, end, end + spec.grace, &next).await,
            }
        }));
    }
    let mut total = RunStats { window_s: spec.duration.as_secs_f64(), workers: n, ..RunStats::default() };
    for h in handles {
        match h.await {
            Ok(stats) => total.merge(&stats),
            Err(e) => total.errors.add(&OpError::Io(format!("worker task failed: {e}"))),
        }
    }
    if let Mode::Open { rate_per_s } = spec.mode {
        let first = due_before(spec.warmup, rate_per_s);
        let last = due_before(spec.warmup + spec.duration, rate_per_s);
        total.intended = last - first;
        let started = total.ops_ok + total.ops_failed;
        total.missed = total.intended.saturating_sub(started);
    }
    total
}

fn count(stats: &mut RunStats, outcome: OpOutcome) -> bool {
    stats.requests += u64::from(outcome.requests);
    match outcome.error {
        None => {
            stats.ops_ok += 1;
            true
        }
        Some(e) => {
            stats.ops_failed += 1;
            stats.errors.add(&e);
            false
        }
    }
}

async fn closed_worker<W: Op>(mut worker: W, measure_from: Instant, end: Instant) -> RunStats {
    let mut stats = RunStats::default();
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let outcome = worker.run().await;
        let done = Instant::now();
        // Counted when it finishes inside the window: throughput = completions per second of window.
        if done >= measure_from && done <= end {
            if count(&mut stats, outcome) {
                stats.latencies.record(done - began);
            }
        } else if outcome.error.is_some() {
            // Failures during warm-up are not counted, but a dead target must not spin: back off a little.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stats
}

async fn open_worker<W: Op>(
    mut worker: W,
    rate_per_s: f64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    give_up: Instant,
    next: &AtomicU64,
) -> RunStats {
    let mut stats = RunStats::default();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let due = start + intended_offset(index, rate_per_s);
        if due >= end || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep_until(due).await;
        let sent = Instant::now();
        let outcome = worker.run().await;
        let done = Instant::now();
        if due >= measure_from && count(&mut stats, outcome) {
            stats.latencies.record(done - due);
            stats.service.record(done - sent);
        }
    }
    stats
}
