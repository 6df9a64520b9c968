//! The seam between the runner and a target: what every mirror must do, and nothing else.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use kassa_engine::FeedRecord;

use crate::Entity;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target is down, slow or refused the connection: retry the same write later (with backoff).
    #[error("{0}")]
    Unavailable(String),
    /// The target refused the record at `lsn` for what it is (a value it cannot hold): retrying will not
    /// help, so the record goes to the dead-letter store and the adapter moves on.
    #[error("record at lsn {lsn} rejected: {reason}")]
    Rejected { lsn: u64, reason: String },
}

/// Opens connections to one target; one [`Target`] per shard, so shards never wait on each other.
pub trait Connect: Send + Sync + 'static {
    type Target: Target;

    /// `postgres`, `mariadb`, `redis`, `kafka`: the adapter's name in metrics, status and the CLI.
    fn name(&self) -> &'static str;

    /// The DDL (or key/topic layout) the adapter creates, for operators who run it themselves.
    fn schema(&self) -> String;

    /// Connects and creates or migrates the schema (idempotently) for `shard`'s writer.
    fn connect(&self, shard: usize, shards: usize) -> impl Future<Output = Result<Self::Target, TargetError>> + Send;

    /// A handle for `verify` that reads (`cursor`, `read_back`, `render`) and must not disturb the running
    /// writer (Kafka: opening a second transactional producer would fence it). Writes through it are not
    /// made. By default, [`Connect::connect`].
    fn connect_reader(&self, shard: usize, shards: usize) -> impl Future<Output = Result<Self::Target, TargetError>> + Send {
        self.connect(shard, shards)
    }
}

/// One shard's writer into a target.
pub trait Target: Send + 'static {
    /// The next LSN this shard's mirror needs: the authoritative cursor, committed with the data. `None`
    /// when the target has never been written for this shard (bootstrap from a snapshot).
    fn cursor(&mut self) -> impl Future<Output = Result<Option<u64>, TargetError>> + Send;

    /// Writes `records` (in LSN order, all of this shard) and sets the cursor to `next_lsn`, in one target
    /// transaction. Every write is guarded by the entity version, so records already applied change nothing.
    /// Records the target does not mirror are skipped. With no records it only moves the cursor.
    fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Bootstrap: writes one chunk of the shard's snapshot (version-guarded, like `apply`).
    fn load(&mut self, entities: &[Entity]) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Ends a bootstrap from the snapshot at `snapshot_lsn`: removes what this shard's mirror holds that
    /// the snapshot has not (`present` holds [`Entity::key`]s) and is not newer than the snapshot, and sets
    /// the cursor to `snapshot_lsn + 1`, in one transaction.
    fn finish_load(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Everything this shard's mirror holds, as `key → canonical text` (see [`Target::render`]); `verify`
    /// compares it with the engine's entities rendered the same way.
    fn read_back(&mut self) -> impl Future<Output = Result<BTreeMap<String, String>, TargetError>> + Send;

    /// How the mirror holds `entity`: `(key, canonical text)` pairs (none if it does not mirror this kind).
    fn render(&self, entity: &Entity) -> Vec<(String, String)>;
}
