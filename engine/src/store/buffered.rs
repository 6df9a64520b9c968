//! A store whose writes land in memory first and reach the backing store in large batches.
//!
//! A shard used to write every durable batch straight into redb and fjall: a write transaction per
//! group commit, a third of a checkout's CPU (BENCHMARKS.md). Here `apply` only merges the batch into
//! an in-memory overlay (later writes to a key replace earlier ones) and a projector, the engine's
//! checkpoint thread, moves the overlay into the backing store a few times a second in one transaction,
//! off the shard's thread. Reads look at the overlay first, so a write is visible to every read from
//! the moment `apply` returns, exactly as before.
//!
//! The overlay has two generations: `active`, which `apply` writes, and `flushing`, frozen while the
//! projector writes it to the backing store. A flush freezes `active`, writes it, and only then drops
//! it, so a key is always in one of the generations or already in the backing store. A read therefore
//! looks at both generations under one brief read lock and then, lock released, at the backing store:
//! it never waits for a flush, and a flush never waits for a read.
//!
//! The journal stays the truth: what the backing store has not received yet is replayed from the
//! journal after a crash, because [`Store::persist`] (which checkpoints use to release journal) flushes
//! first and reports only what the backing store holds.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::{Entries, Keyspace, Lsn, Store, StoreError, StoreKind, StoreSnapshot, WriteBatch, prefix_upper_bound, range_is_empty};

/// Overlay entries past which `apply` flushes on the writer's own thread instead of waiting for the
/// projector: bounds the overlay's memory when the projector falls behind.
pub const OVERLAY_ENTRIES_MAX: usize = 1 << 18;

/// Hands `f` a buffered entry (a buffered delete is skipped); false once `f` has had enough.
fn emit(key: &[u8], value: &Option<Vec<u8>>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> bool {
    match value {
        Some(v) => f(key, v),
        None => true,
    }
}

/// One generation of buffered writes: per keyspace, key → value (`None` deletes).
#[derive(Default)]
struct Generation {
    spaces: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; Keyspace::ALL.len()],
    entries: usize,
    /// Highest LSN merged into this generation.
    lsn: Lsn,
}

impl Generation {
    fn get(&self, ks: Keyspace, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.spaces[ks.index()].get(key)
    }

    fn batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::with_capacity(self.entries);
        for ks in Keyspace::ALL {
            for (key, value) in &self.spaces[ks.index()] {
                match value {
                    Some(v) => batch.put(ks, key, v),
                    None => batch.delete(ks, key),
                }
            }
        }
        batch
    }
}

#[derive(Default)]
struct Overlay {
    active: Generation,
    flushing: Option<Arc<Generation>>,
}

impl Overlay {
    /// The newest buffered value of `key`: `Some(None)` when it is buffered as deleted.
    fn get(&self, ks: Keyspace, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.active.get(ks, key).or_else(|| self.flushing.as_ref().and_then(|f| f.get(ks, key))).cloned()
    }

    /// Buffered entries within the bounds, newest generation winning.
    fn range(&self, ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let generations = self.flushing.iter().map(|f| &**f).chain(std::iter::once(&self.active));
        for generation in generations {
            for (k, v) in generation.spaces[ks.index()].range::<[u8], _>((start, end)) {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    fn is_empty(&self, ks: Keyspace) -> bool {
        self.active.spaces[ks.index()].is_empty() && self.flushing.as_ref().is_none_or(|f| f.spaces[ks.index()].is_empty())
    }
}

pub struct BufferedStore {
    inner: Arc<dyn Store>,
    overlay: RwLock<Overlay>,
    /// One flush at a time (the projector, a checkpoint, a snapshot or an over-full `apply`).
    flush: Mutex<()>,
    /// The LSN of the last `apply`, buffered or not.
    applied: AtomicU64,
}

impl BufferedStore {
    pub fn new(inner: Arc<dyn Store>) -> Result<BufferedStore, StoreError> {
        let applied = AtomicU64::new(inner.applied_lsn()?);
        Ok(BufferedStore { inner, overlay: RwLock::default(), flush: Mutex::new(()), applied })
    }

    /// Entries waiting to reach the backing store.
    pub fn buffered_entries(&self) -> usize {
        let overlay = self.overlay.read();
        overlay.active.entries + overlay.flushing.as_ref().map_or(0, |f| f.entries)
    }

    /// Moves everything buffered so far into the backing store (one transaction); returns the LSN the
    /// backing store is applied at afterwards.
    pub fn flush(&self) -> Result<Lsn, StoreError> {
        let _one = self.flush.lock();
        // A flush that failed left its generation frozen (still read from): it goes first.
        let left = self.overlay.read().flushing.clone();
        if let Some(frozen) = left {
            self.write_back(&frozen)?;
        }
        let frozen = {
            let mut overlay = self.overlay.write();
            if overlay.active.entries == 0 && overlay.active.lsn == 0 {
                return self.inner.applied_lsn();
            }
            let frozen = Arc::new(std::mem::take(&mut overlay.active));
            overlay.flushing = Some(frozen.clone());
            frozen
        };
        self.write_back(&frozen)?;
        self.inner.applied_lsn()
    }

    fn write_back(&self, frozen: &Generation) -> Result<(), StoreError> {
        self.inner.apply(&frozen.batch(), frozen.lsn)?;
        self.overlay.write().flushing = None;
        Ok(())
    }
}

impl Store for BufferedStore {
    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }

    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(buffered) = self.overlay.read().get(ks, key) {
            return Ok(buffered);
        }
        self.inner.get(ks, key)
    }

    fn range(&self, ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool, limit: usize) -> Result<Entries, StoreError> {
        if range_is_empty(start, end) || limit == 0 {
            return Ok(Vec::new());
        }
        // The overlay first: anything it drops meanwhile is in the backing store by the time it is read.
        let buffered = {
            let overlay = self.overlay.read();
            if overlay.is_empty(ks) {
                drop(overlay);
                return self.inner.range(ks, start, end, reverse, limit);
            }
            overlay.range(ks, start, end)
        };
        // Each buffered delete can hide one stored entry: read that many more.
        let deletes = buffered.values().filter(|v| v.is_none()).count();
        let stored = self.inner.range(ks, start, end, reverse, limit.saturating_add(deletes))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in buffered {
            match value {
                Some(v) => merged.insert(key, v),
                None => merged.remove(&key),
            };
        }
        Ok(if reverse { merged.into_iter().rev().take(limit).collect() } else { merged.into_iter().take(limit).collect() })
    }

    fn prefix(&self, ks: Keyspace, prefix: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let end = prefix_upper_bound(prefix);
        let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.range(ks, Bound::Included(prefix), end, false, limit)
    }

    fn len_hint(&self, ks: Keyspace) -> usize {
        self.inner.len_hint(ks)
    }

    /// The backing store's walk with the buffered entries merged in (no flush: listings and stats call
    /// this from request threads).
    fn for_each(&self, ks: Keyspace, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let buffered = {
            let overlay = self.overlay.read();
            if overlay.is_empty(ks) {
                drop(overlay);
                return self.inner.for_each(ks, f);
            }
            overlay.range(ks, Bound::Unbounded, Bound::Unbounded)
        };
        let mut buffered = buffered.into_iter().peekable();
        let mut going = true;
        self.inner.for_each(ks, &mut |key, value| {
            while let Some((k, v)) = buffered.next_if(|(k, _)| k.as_slice() < key) {
                if !emit(&k, &v, f) {
                    going = false;
                    return false;
                }
            }
            let keep = match buffered.next_if(|(k, _)| k.as_slice() == key) {
                Some((k, v)) => emit(&k, &v, f),
                None => f(key, value),
            };
            going = keep;
            keep
        })?;
        if going {
            for (k, v) in buffered {
                if !emit(&k, &v, f) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The backing store's snapshot once everything buffered is in it.
    fn snapshot(&self) -> Result<Box<dyn StoreSnapshot>, StoreError> {
        self.flush()?;
        self.inner.snapshot()
    }

    fn apply(&self, batch: &WriteBatch, lsn: Lsn) -> Result<(), StoreError> {
        // As the backing stores: a replayed LSN is a no-op before anything else is looked at.
        if lsn <= self.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        super::validate_batch(batch)?;
        let entries = {
            let mut overlay = self.overlay.write();
            let active = &mut overlay.active;
            for (ks, key, value) in batch.ops() {
                if active.spaces[ks.index()].insert(key.clone(), value.clone()).is_none() {
                    active.entries += 1;
                }
            }
            active.lsn = lsn;
            active.entries
        };
        self.applied.store(lsn, Ordering::Release);
        if entries >= OVERLAY_ENTRIES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    fn rewrite(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.flush()?;
        self.inner.rewrite(batch)
    }

    fn applied_lsn(&self) -> Result<Lsn, StoreError> {
        Ok(self.applied.load(Ordering::Acquire))
    }

    /// Flushes, then checkpoints the backing store: the LSN returned is held by the backing store, so
    /// journal released up to it is never needed again.
    fn persist(&self) -> Result<Lsn, StoreError> {
        self.flush()?;
        self.inner.persist()
    }
}
