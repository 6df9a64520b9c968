//! A circuit breaker per upstream: closed → open on consecutive failures or on a failure ratio within a
//! counting interval; open → half-open after a timeout (doubled on each re-trip, up to 8×, so a flapping
//! node is ejected for longer); half-open admits `max_requests` probes and closes after that many
//! consecutive successes, re-opening on any failure.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::BreakerConfig;

const BACKOFF_MAX: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// The old gateway's gauge encoding: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// The counts of the current generation (reset on every state change and each closed interval).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Counts {
    pub requests: u32,
    pub total_successes: u32,
    pub total_failures: u32,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
}

struct Inner {
    state: BreakerState,
    counts: Counts,
    /// Closed: end of the counting interval. Open: when probing may start.
    until: Instant,
    /// Trips since the breaker was last closed (drives the open-time backoff).
    trips: u32,
    /// Total transitions into open, for metrics.
    opened_total: u64,
}

pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Breaker {
        let until = Instant::now() + Duration::from_millis(cfg.interval_ms);
        Breaker {
            cfg,
            inner: Mutex::new(Inner { state: BreakerState::Closed, counts: Counts::default(), until, trips: 0, opened_total: 0 }),
        }
    }

    fn refresh(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            BreakerState::Closed if self.cfg.interval_ms > 0 && now >= inner.until => {
                inner.counts = Counts::default();
                inner.until = now + Duration::from_millis(self.cfg.interval_ms);
            }
            BreakerState::Open if now >= inner.until => {
                inner.state = BreakerState::HalfOpen;
                inner.counts = Counts::default();
            }
            _ => {}
        }
    }

    fn set_state(&self, inner: &mut Inner, state: BreakerState, now: Instant) {
        inner.state = state;
        inner.counts = Counts::default();
        match state {
            BreakerState::Open => {
                inner.trips = (inner.trips + 1).min(BACKOFF_MAX);
                inner.opened_total += 1;
                let factor = 1u64 << (inner.trips - 1).min(3);
                inner.until = now + Duration::from_millis(self.cfg.timeout_ms.saturating_mul(factor));
            }
            BreakerState::Closed => {
                inner.trips = 0;
                inner.until = now + Duration::from_millis(self.cfg.interval_ms);
            }
            BreakerState::HalfOpen => {}
        }
    }

    pub fn state(&self) -> BreakerState {
        let mut inner = self.inner.lock();
        self.refresh(&mut inner, Instant::now());
        inner.state
    }

    pub fn counts(&self) -> Counts {
        self.inner.lock().counts
    }

    pub fn opened_total(&self) -> u64 {
        self.inner.lock().opened_total
    }

    /// Whether a request would be admitted now (no side effect).
    pub fn available(&self) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        let mut inner = self.inner.lock();
        self.refresh(&mut inner, Instant::now());
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => inner.counts.requests < self.cfg.max_requests,
        }
    }

    /// Admits a request (counting it) or refuses it.
    pub fn try_acquire(&self) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        let mut inner = self.inner.lock();
        self.refresh(&mut inner, Instant::now());
        let admitted = match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => inner.counts.requests < self.cfg.max_requests,
        };
        if admitted {
            inner.counts.requests = inner.counts.requests.saturating_add(1);
        }
        admitted
    }

    /// Records the outcome of an admitted request.
    pub fn record(&self, success: bool) {
        if !self.cfg.enabled {
            return;
        }
        let now = Instant::now();
        let mut inner = self.inner.lock();
        self.refresh(&mut inner, now);
        let c = &mut inner.counts;
        if success {
            c.total_successes = c.total_successes.saturating_add(1);
            c.consecutive_successes = c.consecutive_successes.saturating_add(1);
            c.consecutive_failures = 0;
            if inner.state == BreakerState::HalfOpen && inner.counts.consecutive_successes >= self.cfg.max_requests {
                self.set_state(&mut inner, BreakerState::Closed, now);
            }
            return;
        }
        c.total_failures = c.total_failures.saturating_add(1);
        c.consecutive_failures = c.consecutive_failures.saturating_add(1);
        c.consecutive_successes = 0;
        let trip = match inner.state {
            BreakerState::Closed => {
                let c = inner.counts;
                let by_streak = self.cfg.consecutive_failures > 0 && c.consecutive_failures >= self.cfg.consecutive_failures;
                let by_ratio = c.requests >= self.cfg.min_requests
                    && f64::from(c.total_failures) >= self.cfg.failure_ratio * f64::from(c.requests.max(1));
                by_streak || by_ratio
            }
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        };
        if trip {
            self.set_state(&mut inner, BreakerState::Open, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig { timeout_ms: 50, max_requests: 2, ..BreakerConfig::default() }
    }

    fn call(b: &Breaker, ok: bool) -> bool {
        let admitted = b.try_acquire();
        if admitted {
            b.record(ok);
        }
        admitted
    }

    #[test]
    fn trips_on_ratio_then_recovers_through_half_open() {
        let b = Breaker::new(cfg());
        assert!(call(&b, true));
        assert!(call(&b, false));
        assert_eq!(b.state(), BreakerState::Closed, "1 of 2 is under the minimum request count");
        assert!(call(&b, false));
        assert_eq!(b.state(), BreakerState::Open, "2 of 3 ≥ 0.6");
        assert!(!call(&b, true), "open rejects");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire() && b.try_acquire());
        assert!(!b.try_acquire(), "half-open admits max_requests");
        b.record(true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_failure_reopens_for_longer() {
        let b = Breaker::new(BreakerConfig { consecutive_failures: 2, min_requests: 100, ..cfg() });
        assert!(call(&b, false) && call(&b, false));
        assert_eq!(b.state(), BreakerState::Open, "two consecutive failures");
        std::thread::sleep(Duration::from_millis(60));
        assert!(call(&b, false));
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), BreakerState::Open, "second trip waits twice as long");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.opened_total(), 2);
    }

    #[test]
    fn disabled_breaker_always_admits() {
        let b = Breaker::new(BreakerConfig { enabled: false, ..cfg() });
        for _ in 0..20 {
            assert!(call(&b, false));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
