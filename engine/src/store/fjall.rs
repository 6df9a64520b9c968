//! fjall (LSM) implementation of [`Store`]: one fjall keyspace per [`Keyspace`] plus an
//! internal keyspace for the applied LSN, all in one fjall `Database` so a cross-keyspace
//! write batch commits data and LSN atomically (one journal batch, one sequence number).

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ::fjall::{Database, KeyspaceCreateOptions, PersistMode, Readable};
use parking_lot::Mutex;

use super::{
    APPLIED_KEY, APPLIED_NAME, Entries, Keyspace, Lsn, MAX_KEY_BYTES, Store, StoreError, StoreKind, StoreSnapshot, WriteBatch, clamp_end,
    clamp_start, decode_lsn, impossible_key, range_is_empty, validate_batch,
};

pub struct FjallStore {
    db: Database,
    /// Indexed by [`Keyspace::index`].
    keyspaces: Vec<::fjall::Keyspace>,
    applied: ::fjall::Keyspace,
    /// Serialises `apply` so the LSN check and the commit are one step even if a caller
    /// breaks the single-writer rule.
    writer: Mutex<()>,
    /// Mirror of the persisted applied LSN, updated after each commit.
    applied_lsn: AtomicU64,
}

fn fjall_err(op: &'static str, ks: Option<&'static str>) -> impl FnOnce(::fjall::Error) -> StoreError {
    move |e| StoreError::fjall(op, ks, e)
}

impl FjallStore {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let db = Database::builder(dir).cache_size(cache_bytes).open().map_err(fjall_err("open", None))?;
        let mut keyspaces = Vec::with_capacity(Keyspace::ALL.len());
        for ks in Keyspace::ALL {
            let handle = db.keyspace(ks.name(), KeyspaceCreateOptions::default).map_err(fjall_err("open keyspace", Some(ks.name())))?;
            keyspaces.push(handle);
        }
        let applied = db.keyspace(APPLIED_NAME, KeyspaceCreateOptions::default).map_err(fjall_err("open keyspace", Some(APPLIED_NAME)))?;
        let lsn = match applied.get(APPLIED_KEY).map_err(fjall_err("get", Some(APPLIED_NAME)))? {
            Some(bytes) => decode_lsn(&bytes)?,
            None => 0,
        };
        Ok(Self { db, keyspaces, applied, writer: Mutex::new(()), applied_lsn: AtomicU64::new(lsn) })
    }

    fn ks(&self, ks: Keyspace) -> &::fjall::Keyspace {
        // The vector is built from Keyspace::ALL in order, so every index exists.
        &self.keyspaces[ks.index()]
    }

    /// Walks `iter` (already positioned in the requested direction), collecting up to `limit`.
    fn collect(iter: impl Iterator<Item = ::fjall::Guard>, ks: Keyspace, op: &'static str, limit: usize) -> Result<Entries, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for guard in iter.take(limit) {
            let (k, v) = guard.into_inner().map_err(fjall_err(op, Some(ks.name())))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

impl Store for FjallStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Fjall
    }

    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if impossible_key(key) {
            return Ok(None);
        }
        // Through a snapshot: `Keyspace::get` reads at the newest sequence number, which can
        // see a batch that is still being inserted into the memtables.
        let value = self.db.snapshot().get(self.ks(ks), key).map_err(fjall_err("get", Some(ks.name())))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn range(&self, ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool, limit: usize) -> Result<Entries, StoreError> {
        let (start, end) = (clamp_start(start), clamp_end(end));
        if limit == 0 || range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        // Through a snapshot: `Keyspace::range` reads every key at the newest sequence number,
        // so a scan racing a batch could see part of it.
        let iter = self.db.snapshot().range::<&[u8], _>(self.ks(ks), (start, end));
        if reverse { Self::collect(iter.rev(), ks, "range", limit) } else { Self::collect(iter, ks, "range", limit) }
    }

    fn prefix(&self, ks: Keyspace, prefix: &[u8], limit: usize) -> Result<Entries, StoreError> {
        if limit == 0 || prefix.len() > MAX_KEY_BYTES {
            return Ok(Vec::new());
        }
        let iter = self.db.snapshot().prefix(self.ks(ks), prefix);
        Self::collect(iter, ks, "prefix", limit)
    }

    fn len_hint(&self, ks: Keyspace) -> usize {
        self.ks(ks).approximate_len()
    }

    fn snapshot(&self) -> Result<Box<dyn StoreSnapshot>, StoreError> {
        let snapshot = self.db.snapshot();
        let lsn = match snapshot.get(&self.applied, APPLIED_KEY).map_err(fjall_err("get", Some(APPLIED_NAME)))? {
            Some(bytes) => decode_lsn(&bytes)?,
            None => 0,
        };
        Ok(Box::new(FjallSnapshot { snapshot, keyspaces: self.keyspaces.clone(), lsn }))
    }

    fn apply(&self, batch: &WriteBatch, lsn: Lsn) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        if lsn <= self.applied_lsn.load(Ordering::Acquire) {
            return Ok(());
        }
        validate_batch(batch)?;
        // No durability set on the batch: fjall neither flushes nor syncs it; `persist` does.
        let mut b = self.db.batch();
        for (ks, key, value) in batch.ops() {
            match value {
                Some(value) => b.insert(self.ks(*ks), key.as_slice(), value.as_slice()),
                None => b.remove(self.ks(*ks), key.as_slice()),
            }
        }
        b.insert(&self.applied, APPLIED_KEY, lsn.to_be_bytes());
        b.commit().map_err(fjall_err("commit batch", None))?;
        self.applied_lsn.store(lsn, Ordering::Release);
        Ok(())
    }

    fn rewrite(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        {
            let _writer = self.writer.lock();
            validate_batch(batch)?;
            let mut b = self.db.batch();
            for (ks, key, value) in batch.ops() {
                match value {
                    Some(value) => b.insert(self.ks(*ks), key.as_slice(), value.as_slice()),
                    None => b.remove(self.ks(*ks), key.as_slice()),
                }
            }
            b.commit().map_err(fjall_err("commit rewrite", None))?;
        }
        self.persist().map(|_| ())
    }

    fn applied_lsn(&self) -> Result<Lsn, StoreError> {
        Ok(self.applied_lsn.load(Ordering::Acquire))
    }

    fn persist(&self) -> Result<Lsn, StoreError> {
        // Read first: every batch up to `lsn` is already in fjall's journal writer, so the sync
        // below covers it (and possibly later ones too, which is harmless).
        let lsn = self.applied_lsn.load(Ordering::Acquire);
        self.db.persist(PersistMode::SyncAll).map_err(fjall_err("persist", None))?;
        Ok(lsn)
    }
}

/// A fjall snapshot (one sequence number across every keyspace of the database).
struct FjallSnapshot {
    snapshot: ::fjall::Snapshot,
    keyspaces: Vec<::fjall::Keyspace>,
    lsn: Lsn,
}

impl StoreSnapshot for FjallSnapshot {
    fn applied_lsn(&self) -> Lsn {
        self.lsn
    }

    fn for_each(&self, ks: Keyspace, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        for guard in self.snapshot.iter(&self.keyspaces[ks.index()]) {
            let (k, v) = guard.into_inner().map_err(fjall_err("iterate", Some(ks.name())))?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}
