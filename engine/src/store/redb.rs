//! redb (B-tree) implementation of [`Store`]: one redb table per [`Keyspace`] plus an internal
//! table for the applied LSN, written in the same write transaction as the data.
//!
//! `apply` commits with `Durability::None`: the commit is visible to readers at once but not
//! written durably; redb keeps it in memory/page cache until a later `Durability::Immediate`
//! commit, which makes it and every earlier non-durable commit durable together. After a crash
//! redb reopens at the last durable commit, so data and applied LSN always agree.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use parking_lot::Mutex;

use super::{
    APPLIED_KEY, APPLIED_NAME, Entries, Keyspace, Lsn, MAX_KEY_BYTES, Store, StoreError, StoreKind, StoreSnapshot, WriteBatch, clamp_end,
    clamp_start, impossible_key, prefix_upper_bound, range_is_empty, validate_batch,
};

type Bytes = &'static [u8];

const APPLIED: TableDefinition<'static, Bytes, u64> = TableDefinition::new(APPLIED_NAME);

fn table(ks: Keyspace) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(ks.name())
}

pub struct RedbStore {
    db: Database,
    /// Serialises `apply` so the LSN check and the commit are one step.
    writer: Mutex<()>,
    /// Mirror of the committed applied LSN, updated after each commit.
    applied_lsn: AtomicU64,
}

impl RedbStore {
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir { path: parent.to_path_buf(), source })?;
        }
        let db = Database::builder()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(path)
            .map_err(|e| StoreError::redb("open", None, e))?;

        // Create every table up front: a read transaction cannot open a missing table.
        let mut txn = db.begin_write().map_err(|e| StoreError::redb("begin_write", None, e))?;
        txn.set_quick_repair(true);
        let lsn = {
            for ks in Keyspace::ALL {
                txn.open_table(table(ks)).map_err(|e| StoreError::redb("open table", Some(ks.name()), e))?;
            }
            let applied = txn.open_table(APPLIED).map_err(|e| StoreError::redb("open table", Some(APPLIED_NAME), e))?;
            applied.get(APPLIED_KEY).map_err(|e| StoreError::redb("get", Some(APPLIED_NAME), e))?.map(|g| g.value()).unwrap_or(0)
        };
        txn.commit().map_err(|e| StoreError::redb("commit", None, e))?;

        Ok(Self { db, writer: Mutex::new(()), applied_lsn: AtomicU64::new(lsn) })
    }

    fn write_ops(txn: &WriteTransaction, batch: &WriteBatch, lsn: Lsn) -> Result<(), StoreError> {
        // Group by keyspace so each table is opened once; a key lives in one keyspace, so the
        // order of operations on any one key is kept.
        let mut touched = [false; Keyspace::ALL.len()];
        for (ks, _, _) in batch.ops() {
            touched[ks.index()] = true;
        }
        for ks in Keyspace::ALL.into_iter().filter(|ks| touched[ks.index()]) {
            let name = Some(ks.name());
            let mut t = txn.open_table(table(ks)).map_err(|e| StoreError::redb("open table", name, e))?;
            for (_, key, value) in batch.ops().iter().filter(|op| op.0 == ks) {
                match value {
                    Some(value) => {
                        t.insert(key.as_slice(), value.as_slice()).map_err(|e| StoreError::redb("insert", name, e))?;
                    }
                    None => {
                        t.remove(key.as_slice()).map_err(|e| StoreError::redb("remove", name, e))?;
                    }
                }
            }
        }
        let mut applied = txn.open_table(APPLIED).map_err(|e| StoreError::redb("open table", Some(APPLIED_NAME), e))?;
        applied.insert(APPLIED_KEY, lsn).map_err(|e| StoreError::redb("insert", Some(APPLIED_NAME), e))?;
        Ok(())
    }

    fn read_table(&self, ks: Keyspace) -> Result<::redb::ReadOnlyTable<Bytes, Bytes>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::redb("begin_read", Some(ks.name()), e))?;
        txn.open_table(table(ks)).map_err(|e| StoreError::redb("open table", Some(ks.name()), e))
    }

    fn collect<'a>(
        iter: impl Iterator<Item = Result<(::redb::AccessGuard<'a, Bytes>, ::redb::AccessGuard<'a, Bytes>), ::redb::StorageError>>,
        ks: Keyspace,
        op: &'static str,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| StoreError::redb(op, Some(ks.name()), e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

impl Store for RedbStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Redb
    }

    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if impossible_key(key) {
            return Ok(None);
        }
        let value = self.read_table(ks)?.get(key).map_err(|e| StoreError::redb("get", Some(ks.name()), e))?;
        Ok(value.map(|g| g.value().to_vec()))
    }

    fn range(&self, ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool, limit: usize) -> Result<Entries, StoreError> {
        let (start, end) = (clamp_start(start), clamp_end(end));
        if limit == 0 || range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let t = self.read_table(ks)?;
        let iter = t.range::<&[u8]>((start, end)).map_err(|e| StoreError::redb("range", Some(ks.name()), e))?;
        if reverse { Self::collect(iter.rev(), ks, "range", limit) } else { Self::collect(iter, ks, "range", limit) }
    }

    fn len_hint(&self, ks: Keyspace) -> usize {
        use ::redb::ReadableTableMetadata as _;
        self.read_table(ks).ok().and_then(|t| t.len().ok()).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn prefix(&self, ks: Keyspace, prefix: &[u8], limit: usize) -> Result<Entries, StoreError> {
        if prefix.len() > MAX_KEY_BYTES {
            return Ok(Vec::new());
        }
        let upper = prefix_upper_bound(prefix);
        let end = match &upper {
            Some(u) => Bound::Excluded(u.as_slice()),
            None => Bound::Unbounded,
        };
        self.range(ks, Bound::Included(prefix), end, false, limit)
    }

    fn snapshot(&self) -> Result<Box<dyn StoreSnapshot>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::redb("begin_read", None, e))?;
        let lsn = {
            let applied = txn.open_table(APPLIED).map_err(|e| StoreError::redb("open table", Some(APPLIED_NAME), e))?;
            applied.get(APPLIED_KEY).map_err(|e| StoreError::redb("get", Some(APPLIED_NAME), e))?.map(|g| g.value()).unwrap_or(0)
        };
        Ok(Box::new(RedbSnapshot { txn, lsn }))
    }

    fn apply(&self, batch: &WriteBatch, lsn: Lsn) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        if lsn <= self.applied_lsn.load(Ordering::Acquire) {
            return Ok(());
        }
        validate_batch(batch)?;
        let mut txn = self.db.begin_write().map_err(|e| StoreError::redb("begin_write", None, e))?;
        txn.set_durability(Durability::None).map_err(|e| StoreError::redb("set durability", None, e))?;
        // On error the transaction is dropped, which aborts it: nothing of the batch is applied.
        Self::write_ops(&txn, batch, lsn)?;
        txn.commit().map_err(|e| StoreError::redb("commit", None, e))?;
        self.applied_lsn.store(lsn, Ordering::Release);
        Ok(())
    }

    fn rewrite(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        validate_batch(batch)?;
        let lsn = self.applied_lsn.load(Ordering::Acquire);
        let mut txn = self.db.begin_write().map_err(|e| StoreError::redb("begin_write", None, e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::redb("set durability", None, e))?;
        Self::write_ops(&txn, batch, lsn)?;
        txn.commit().map_err(|e| StoreError::redb("commit", None, e))?;
        Ok(())
    }

    fn applied_lsn(&self) -> Result<Lsn, StoreError> {
        Ok(self.applied_lsn.load(Ordering::Acquire))
    }

    fn persist(&self) -> Result<Lsn, StoreError> {
        // Hold the writer lock so the returned LSN is exactly what this commit made durable.
        // redb allows one write transaction at a time anyway, so this costs the writer nothing
        // extra.
        let _writer = self.writer.lock();
        let lsn = self.applied_lsn.load(Ordering::Acquire);
        let mut txn = self.db.begin_write().map_err(|e| StoreError::redb("begin_write", None, e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::redb("set durability", None, e))?;
        // Save the allocator state so reopening after a crash does not walk the whole file.
        txn.set_quick_repair(true);
        txn.commit().map_err(|e| StoreError::redb("commit", None, e))?;
        Ok(lsn)
    }
}

/// A redb read transaction: one committed state of every table.
struct RedbSnapshot {
    txn: ::redb::ReadTransaction,
    lsn: Lsn,
}

impl StoreSnapshot for RedbSnapshot {
    fn applied_lsn(&self) -> Lsn {
        self.lsn
    }

    fn for_each(&self, ks: Keyspace, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let t = self.txn.open_table(table(ks)).map_err(|e| StoreError::redb("open table", Some(ks.name()), e))?;
        let iter = t.iter().map_err(|e| StoreError::redb("iterate", Some(ks.name()), e))?;
        for item in iter {
            let (k, v) = item.map_err(|e| StoreError::redb("iterate", Some(ks.name()), e))?;
            if !f(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }
}
