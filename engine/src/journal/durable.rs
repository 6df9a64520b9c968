//! The durable LSN of one journal, shared with readers (change feed, replication) that wait for it to grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Lsn;

/// Shared, monotonically increasing durable LSN. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct DurableWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lsn: AtomicU64,
    // The mutex only orders `advance` against sleepers so that no wake-up is lost.
    lock: Mutex<()>,
    grown: Condvar,
    async_tx: tokio::sync::watch::Sender<Lsn>,
}

impl DurableWatch {
    /// A watch starting at `lsn`. Writers advance it; a watch built here by hand never moves, which suits
    /// reading a journal that no writer has open.
    pub fn new(lsn: Lsn) -> DurableWatch {
        let (async_tx, _) = tokio::sync::watch::channel(lsn);
        DurableWatch { inner: Arc::new(Inner { lsn: AtomicU64::new(lsn), lock: Mutex::new(()), grown: Condvar::new(), async_tx }) }
    }

    /// Current durable LSN (0 = nothing durable yet).
    pub fn get(&self) -> Lsn {
        // Acquire pairs with the Release in `advance`: the records up to this LSN are on disk and visible.
        self.inner.lsn.load(Ordering::Acquire)
    }

    /// Blocks until the durable LSN exceeds `lsn` or `timeout` passes; returns the durable LSN then.
    pub fn wait_beyond(&self, lsn: Lsn, timeout: Duration) -> Lsn {
        let current = self.get();
        if current > lsn {
            return current;
        }
        // A timeout too large for an Instant (e.g. Duration::MAX) means "no deadline".
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.inner.lock.lock();
        // Each pass either returns or sleeps; the deadline bounds the number of spurious wake-ups.
        loop {
            let current = self.get();
            if current > lsn {
                return current;
            }
            match deadline {
                Some(deadline) => {
                    if self.inner.grown.wait_until(&mut guard, deadline).timed_out() {
                        return self.get();
                    }
                }
                None => self.inner.grown.wait(&mut guard),
            }
        }
    }

    /// Async variant of [`DurableWatch::wait_beyond`] without a timeout (wrap it in `tokio::time::timeout`).
    pub async fn wait_beyond_async(&self, lsn: Lsn) -> Lsn {
        let mut rx = self.subscribe();
        // The sender lives inside `self`, so `wait_for` cannot fail with a closed channel.
        match rx.wait_for(|&durable| durable > lsn).await {
            Ok(durable) => *durable,
            Err(_) => self.get(),
        }
    }

    /// A tokio watch receiver that sees every advance (for `select!` in async consumers).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Lsn> {
        self.inner.async_tx.subscribe()
    }

    /// Raises the durable LSN to `lsn` (never lowers it) and wakes waiters.
    pub(crate) fn advance(&self, lsn: Lsn) {
        {
            let _guard = self.inner.lock.lock();
            if lsn <= self.inner.lsn.load(Ordering::Relaxed) {
                return;
            }
            self.inner.lsn.store(lsn, Ordering::Release);
        }
        self.inner.grown.notify_all();
        self.inner.async_tx.send_if_modified(|current| {
            let grows = lsn > *current;
            if grows {
                *current = lsn;
            }
            grows
        });
        debug_assert!(self.get() >= lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_is_monotonic() {
        let watch = DurableWatch::new(5);
        watch.advance(3);
        assert_eq!(watch.get(), 5);
        watch.advance(9);
        assert_eq!(watch.get(), 9);
        assert_eq!(*watch.subscribe().borrow(), 9);
    }

    #[test]
    fn wait_beyond_times_out_and_wakes() {
        let watch = DurableWatch::new(1);
        let started = Instant::now();
        assert_eq!(watch.wait_beyond(1, Duration::from_millis(30)), 1);
        assert!(started.elapsed() >= Duration::from_millis(30));

        let writer = watch.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.advance(4);
        });
        assert_eq!(watch.wait_beyond(1, Duration::from_secs(10)), 4);
        handle.join().expect("advancing thread");

        let writer = watch.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            writer.advance(5);
        });
        assert_eq!(watch.wait_beyond(4, Duration::MAX), 5);
        handle.join().expect("advancing thread");
    }

    #[test]
    fn async_wait_sees_advance() {
        let watch = DurableWatch::new(0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let writer = watch.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            writer.advance(2);
        });
        let seen = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), watch.wait_beyond_async(1)).await });
        assert_eq!(seen, Ok(2));
        handle.join().expect("advancing thread");
    }
}
