//! Stores: views of the journal (DESIGN.md section 3).
//!
//! The journal is the durable truth; a store holds the current state for fast reads from any
//! thread and for fast restart. Two implementations sit behind one [`Store`] trait: fjall (LSM,
//! cheap writes) and redb (B-tree, fast point and range reads). A store is written by a single
//! writer (its shard) without syncing; every [`Store::apply`] records the journal LSN it applied
//! atomically with the data, and [`Store::persist`] (a checkpoint) makes everything applied so
//! far durable. After a crash a store reopens at some consistent LSN and the caller replays the
//! journal after [`Store::applied_lsn`].

mod buffered;
mod fjall;
mod redb;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::buffered::BufferedStore;
pub use self::fjall::FjallStore;
pub use self::redb::RedbStore;

/// Log sequence number of a journal record. 0 means "nothing applied".
pub type Lsn = u64;

/// Every logical table of the engine. Values are opaque bytes (rkyv records, encoded by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    Products,
    ProductsByCategory,
    ProductsByPrice,
    Reservations,
    Baskets,
    Payments,
    PaymentsByUser,
    Idempotency,
    Notifications,
    NotificationsByUser,
    Users,
    Meta,
    /// Stored payment methods, one wallet per user (state store).
    Wallets,
}

impl Keyspace {
    pub const ALL: [Keyspace; 13] = [
        Keyspace::Products,
        Keyspace::ProductsByCategory,
        Keyspace::ProductsByPrice,
        Keyspace::Reservations,
        Keyspace::Baskets,
        Keyspace::Payments,
        Keyspace::PaymentsByUser,
        Keyspace::Idempotency,
        Keyspace::Notifications,
        Keyspace::NotificationsByUser,
        Keyspace::Users,
        Keyspace::Meta,
        Keyspace::Wallets,
    ];

    /// Stable on-disk name (fjall keyspace / redb table). Never rename: it is the file format.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Products => "products",
            Keyspace::ProductsByCategory => "products_by_category",
            Keyspace::ProductsByPrice => "products_by_price",
            Keyspace::Reservations => "reservations",
            Keyspace::Baskets => "baskets",
            Keyspace::Payments => "payments",
            Keyspace::PaymentsByUser => "payments_by_user",
            Keyspace::Idempotency => "idempotency",
            Keyspace::Notifications => "notifications",
            Keyspace::NotificationsByUser => "notifications_by_user",
            Keyspace::Users => "users",
            Keyspace::Meta => "meta",
            Keyspace::Wallets => "wallets",
        }
    }

    /// Position in [`Keyspace::ALL`], for per-keyspace arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Name of the internal keyspace/table that holds the applied LSN. Not a [`Keyspace`], so no
/// caller can overwrite it by accident.
pub(crate) const APPLIED_NAME: &str = "_kassa_applied";
/// The single key under [`APPLIED_NAME`]; its value is the LSN as 8 big-endian bytes.
pub(crate) const APPLIED_KEY: &[u8] = b"applied_lsn";

/// Key-value pairs returned by scans, in key order (or reverse key order).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One put or delete of a [`WriteBatch`]; `None` deletes.
pub type WriteOp = (Keyspace, Vec<u8>, Option<Vec<u8>>);

/// An ordered list of puts and deletes across keyspaces, applied atomically by [`Store::apply`].
/// Later operations on the same key win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self { ops: Vec::new() }
    }

    pub fn with_capacity(ops: usize) -> Self {
        Self { ops: Vec::with_capacity(ops) }
    }

    pub fn put(&mut self, ks: Keyspace, key: &[u8], value: &[u8]) {
        self.ops.push((ks, key.to_vec(), Some(value.to_vec())));
    }

    pub fn delete(&mut self, ks: Keyspace, key: &[u8]) {
        self.ops.push((ks, key.to_vec(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn clear(&mut self) {
        self.ops.clear();
    }

    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }
}

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("fjall {op} failed{}: {source}", keyspace_suffix(*.keyspace))]
    Fjall {
        op: &'static str,
        keyspace: Option<&'static str>,
        #[source]
        source: Box<::fjall::Error>,
    },
    #[error("redb {op} failed{}: {source}", keyspace_suffix(*.keyspace))]
    Redb {
        op: &'static str,
        keyspace: Option<&'static str>,
        #[source]
        source: Box<::redb::Error>,
    },
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store is corrupt: applied LSN record has {len_bytes} bytes, expected 8")]
    BadAppliedLsn { len_bytes: usize },
    #[error("invalid key for keyspace {keyspace}: {len_bytes} bytes (must be 1..={MAX_KEY_BYTES})")]
    InvalidKey { keyspace: &'static str, len_bytes: usize },
    #[error("value too large for keyspace {keyspace}: {len_bytes} bytes (max {MAX_VALUE_BYTES})")]
    ValueTooLarge { keyspace: &'static str, len_bytes: usize },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

fn keyspace_suffix(ks: Option<&'static str>) -> String {
    match ks {
        Some(name) => format!(" on keyspace {name}"),
        None => String::new(),
    }
}

impl StoreError {
    pub(crate) fn fjall(op: &'static str, keyspace: Option<&'static str>, e: ::fjall::Error) -> Self {
        StoreError::Fjall { op, keyspace, source: Box::new(e) }
    }

    pub(crate) fn redb(op: &'static str, keyspace: Option<&'static str>, e: impl Into<::redb::Error>) -> Self {
        StoreError::Redb { op, keyspace, source: Box::new(e.into()) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    Fjall,
    Redb,
}

/// One committed state of a store, held open: every read through it sees the same state across every
/// keyspace, and [`StoreSnapshot::applied_lsn`] says which LSN that state reflects.
pub trait StoreSnapshot: Send {
    fn applied_lsn(&self) -> Lsn;

    /// Streams every entry of a keyspace, as of the snapshot; stops early if `f` returns false.
    fn for_each(&self, ks: Keyspace, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;
}

/// A view of the journal: the current state of every keyspace plus the LSN it reflects.
///
/// Reads may run on any thread concurrently with the single writer and each read sees one
/// committed state (a `range`/`prefix`/`for_each` call walks one snapshot).
pub trait Store: Send + Sync + 'static {
    fn kind(&self) -> StoreKind;

    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Ordered by key; `reverse` walks from the end; at most `limit` entries.
    fn range(&self, ks: Keyspace, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool, limit: usize) -> Result<Entries, StoreError>;

    /// Entries whose key starts with `prefix`, ordered by key, at most `limit`.
    fn prefix(&self, ks: Keyspace, prefix: &[u8], limit: usize) -> Result<Entries, StoreError>;

    /// Streams every entry of a keyspace to `f` (recovery loads state with it), from one snapshot; stops
    /// early if `f` returns false.
    fn for_each(&self, ks: Keyspace, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.snapshot()?.for_each(ks, f)
    }

    /// About how many entries a keyspace holds (recovery sizes its tables with it); 0 when unknown.
    fn len_hint(&self, _ks: Keyspace) -> usize {
        0
    }

    /// Opens a snapshot of the current committed state (cheap: no copy; writes go on meanwhile).
    fn snapshot(&self) -> Result<Box<dyn StoreSnapshot>, StoreError>;

    /// Atomically applies the batch and records `lsn` as applied. Monotonic: if `lsn` is not
    /// greater than [`Store::applied_lsn`] this is a no-op returning Ok, so replay is
    /// idempotent. Does not sync. A batch with an empty or over-long key (see
    /// [`MAX_KEY_BYTES`]) is refused whole with [`StoreError::InvalidKey`].
    ///
    /// What survives a crash without a later `persist` differs: redb keeps nothing after the
    /// last checkpoint, fjall keeps whatever its journal had handed to the OS. Either way the
    /// store reopens at one consistent LSN.
    fn apply(&self, batch: &WriteBatch, lsn: Lsn) -> Result<(), StoreError>;

    /// Writes the batch without moving the applied LSN and makes it durable: a record migration (the
    /// same state in a new encoding), never new state. Atomic like [`Store::apply`].
    fn rewrite(&self, batch: &WriteBatch) -> Result<(), StoreError>;

    /// The last applied LSN; 0 for a fresh store.
    fn applied_lsn(&self) -> Result<Lsn, StoreError>;

    /// Checkpoint: everything applied so far becomes durable; returns the LSN that is now
    /// durable (at least the LSN applied when the call started). May block `apply` for its
    /// duration (redb: one write transaction at a time; fjall: the journal lock).
    fn persist(&self) -> Result<Lsn, StoreError>;
}

/// Opens (or creates) a fjall store in directory `dir` with a block cache of `cache_bytes`.
pub fn open_fjall(dir: &Path, cache_bytes: u64) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(FjallStore::open(dir, cache_bytes)?))
}

/// Opens (or creates) a redb store in file `path` with a page cache of `cache_bytes`.
pub fn open_redb(path: &Path, cache_bytes: u64) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(RedbStore::open(path, cache_bytes)?))
}

/// Longest key either store accepts (fjall's limit; redb would take more, but both stores must
/// accept exactly the same batches).
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;
/// Largest value either store accepts (fjall's limit).
pub const MAX_VALUE_BYTES: usize = u32::MAX as usize;

/// Rejects a batch that either engine would refuse (or panic on) before anything is written,
/// so both stores accept exactly the same batches and a bad one never half-applies.
pub(crate) fn validate_batch(batch: &WriteBatch) -> Result<(), StoreError> {
    for (ks, key, value) in batch.ops() {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StoreError::InvalidKey { keyspace: ks.name(), len_bytes: key.len() });
        }
        if let Some(v) = value.as_ref().filter(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(StoreError::ValueTooLarge { keyspace: ks.name(), len_bytes: v.len() });
        }
    }
    Ok(())
}

/// True if no stored key can equal `key` (so a lookup can answer "absent" without asking the
/// engine, which would panic on an over-long key).
pub(crate) fn impossible_key(key: &[u8]) -> bool {
    key.is_empty() || key.len() > MAX_KEY_BYTES
}

/// Rewrites an over-long start bound to an equivalent one of at most [`MAX_KEY_BYTES`]: a stored
/// key `k` (never longer) is >= `s` exactly when it is > `s[..MAX]`.
pub(crate) fn clamp_start(start: Bound<&[u8]>) -> Bound<&[u8]> {
    match start {
        Bound::Included(s) | Bound::Excluded(s) if s.len() > MAX_KEY_BYTES => Bound::Excluded(&s[..MAX_KEY_BYTES]),
        other => other,
    }
}

/// Rewrites an over-long end bound: a stored key `k` is <= `e` exactly when it is <= `e[..MAX]`.
pub(crate) fn clamp_end(end: Bound<&[u8]>) -> Bound<&[u8]> {
    match end {
        Bound::Included(e) | Bound::Excluded(e) if e.len() > MAX_KEY_BYTES => Bound::Included(&e[..MAX_KEY_BYTES]),
        other => other,
    }
}

/// True if no key can satisfy both bounds; both engines (and `BTreeMap`) may panic on an
/// inverted range, and bad input must never panic.
pub(crate) fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    use Bound::{Excluded, Included, Unbounded};
    match (start, end) {
        (Unbounded, _) | (_, Unbounded) => false,
        (Included(s), Included(e)) => s > e,
        (Included(s), Excluded(e)) | (Excluded(s), Included(e)) | (Excluded(s), Excluded(e)) => s >= e,
    }
}

/// Smallest key greater than every key that starts with `prefix`, or `None` if there is none
/// (empty prefix or all 0xFF bytes).
pub(crate) fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn decode_lsn(bytes: &[u8]) -> Result<Lsn, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::BadAppliedLsn { len_bytes: bytes.len() })?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests;
