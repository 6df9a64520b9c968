//! What each adapter reports: per shard its state, cursor, lag and counters; read by `/metrics`,
//! `GET /admin/adapters` and `kassa adapters status`.

use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

/// Where one shard's mirror stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    Connecting,
    /// Copying the shard snapshot (a new mirror, or one whose cursor fell off retention).
    Bootstrapping,
    /// Applying the feed as it comes.
    Following,
    /// The target is down or refused a write: retrying with backoff.
    Retrying,
    Stopped,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShardStatus {
    pub shard: usize,
    pub state: ShardState,
    /// The next LSN the target needs (its committed cursor).
    pub cursor: u64,
    /// The shard's durable LSN when last looked at.
    pub head: u64,
    pub lag_lsn: u64,
    /// Time since the mirror was last seen caught up (after a write, or when the status was read): an upper
    /// bound on how stale the target is, as precise as the status is read often. 0 when caught up.
    pub lag_seconds: f64,
    pub applied_total: u64,
    pub retries_total: u64,
    pub bootstraps_total: u64,
    pub dead_letters_total: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterStatus {
    pub name: String,
    pub shards: Vec<ShardStatus>,
}

impl AdapterStatus {
    pub fn lag_lsn(&self) -> u64 {
        self.shards.iter().map(|s| s.lag_lsn).sum()
    }

    pub fn lag_seconds(&self) -> f64 {
        self.shards.iter().map(|s| s.lag_seconds).fold(0.0, f64::max)
    }

    pub fn dead_letters(&self) -> u64 {
        self.shards.iter().map(|s| s.dead_letters_total).sum()
    }
}

/// The live figures of one shard's mirror, updated by its task.
pub(crate) struct ShardCell {
    status: Mutex<ShardStatus>,
    caught_up_at: Mutex<Instant>,
}

impl ShardCell {
    pub(crate) fn new(shard: usize) -> ShardCell {
        let status = ShardStatus {
            shard,
            state: ShardState::Connecting,
            cursor: 0,
            head: 0,
            lag_lsn: 0,
            lag_seconds: 0.0,
            applied_total: 0,
            retries_total: 0,
            bootstraps_total: 0,
            dead_letters_total: 0,
            last_error: None,
        };
        ShardCell { status: Mutex::new(status), caught_up_at: Mutex::new(Instant::now()) }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut ShardStatus)) {
        f(&mut self.status.lock());
    }

    /// Records the cursor and head after a write; the lag they imply is computed when the status is read.
    pub(crate) fn position(&self, cursor: u64, head: u64) {
        let mut s = self.status.lock();
        s.cursor = cursor;
        s.head = s.head.max(head);
        if (s.head + 1).saturating_sub(cursor) == 0 {
            *self.caught_up_at.lock() = Instant::now();
        }
    }

    /// The status, its lag measured against the shard's durable head `head` now (so a mirror stuck in a
    /// write still shows the engine moving away from it).
    pub(crate) fn read(&self, head: u64) -> ShardStatus {
        let mut s = self.status.lock().clone();
        s.head = s.head.max(head);
        s.lag_lsn = (s.head + 1).saturating_sub(s.cursor.max(1));
        let mut caught_up_at = self.caught_up_at.lock();
        if s.lag_lsn == 0 {
            *caught_up_at = Instant::now();
        }
        s.lag_seconds = if s.lag_lsn == 0 { 0.0 } else { caught_up_at.elapsed().as_secs_f64() };
        s
    }
}
