//! Which finished requests are written to the access log: every error and every slow request, and a
//! fixed share of the rest (each line says which share, so counts can be scaled back).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::AccessLogConfig;

pub struct AccessLog {
    sample_every: u64,
    slow: Duration,
    /// Ordinary requests seen; one shared counter so that the share is exact across cores.
    ordinary: AtomicU64,
}

impl AccessLog {
    pub fn new(cfg: &AccessLogConfig) -> AccessLog {
        AccessLog { sample_every: cfg.sample_every, slow: Duration::from_millis(cfg.slow_ms), ordinary: AtomicU64::new(0) }
    }

    /// Whether a request that ended with `status` after `elapsed` gets a line: `Some(n)` when it does
    /// and stands for `n` requests like it (1 for errors and slow requests, which are all logged).
    pub fn wants(&self, status: u16, elapsed: Duration) -> Option<u64> {
        if status >= 400 || elapsed >= self.slow {
            return Some(1);
        }
        match self.sample_every {
            0 => None,
            1 => Some(1),
            n => self.ordinary.fetch_add(1, Ordering::Relaxed).is_multiple_of(n).then_some(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(sample_every: u64) -> AccessLog {
        AccessLog::new(&AccessLogConfig { sample_every, slow_ms: 100 })
    }

    #[test]
    fn one_ordinary_request_in_n_and_every_error_and_slow_one() {
        let fast = Duration::from_millis(1);
        let sampled = log(4);
        let ordinary: Vec<Option<u64>> = (0..8).map(|_| sampled.wants(200, fast)).collect();
        assert_eq!(ordinary, [Some(4), None, None, None, Some(4), None, None, None]);
        assert!((0..5).all(|_| sampled.wants(404, fast) == Some(1)), "every error");
        assert!((0..5).all(|_| sampled.wants(200, Duration::from_millis(100)) == Some(1)), "every slow request");
        assert!((0..5).all(|_| log(1).wants(200, fast) == Some(1)));
        let none = log(0);
        assert!((0..5).all(|_| none.wants(204, fast).is_none()));
        assert_eq!(none.wants(500, fast), Some(1));
    }
}
