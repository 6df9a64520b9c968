//! The change feed: the journal itself, read from a `(shard, lsn)` cursor. Replication and adapters
//! follow it; delivery is at-least-once and ordered per shard, and each record carries the entity version
//! (= the LSN of the change) so a consumer can apply every change exactly once.
//!
//! Consumers that register a named cursor here keep the journal segments they still need from being
//! deleted by checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use crate::engine::Engine;
use crate::event::{EVENT_KIND, Event};
use crate::journal::{DurableWatch, JournalError, JournalReader};

/// One committed event of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRecord {
    pub shard: usize,
    pub lsn: u64,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("undecodable record at lsn {lsn}: {reason}")]
    Decode { lsn: u64, reason: String },
    #[error("no shard {0}")]
    NoShard(usize),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A reader of one shard's committed events from a given LSN on.
pub struct Subscription {
    shard: usize,
    reader: JournalReader,
    durable: DurableWatch,
    next_lsn: u64,
}

impl Subscription {
    /// The next committed event, or `None` when caught up.
    pub fn try_next(&mut self) -> Result<Option<FeedRecord>, FeedError> {
        loop {
            let Some(record) = self.reader.next()? else { return Ok(None) };
            self.next_lsn = record.lsn + 1;
            if record.kind != EVENT_KIND {
                continue;
            }
            let event = crate::migrate::decode_event(record.schema, &record.payload)
                .map_err(|reason| FeedError::Decode { lsn: record.lsn, reason })?;
            return Ok(Some(FeedRecord { shard: self.shard, lsn: record.lsn, event }));
        }
    }

    /// Waits up to `timeout` for the next committed event.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<FeedRecord>, FeedError> {
        if let Some(r) = self.try_next()? {
            return Ok(Some(r));
        }
        self.durable.wait_beyond(self.next_lsn.saturating_sub(1), timeout);
        self.try_next()
    }

    /// The LSN the next record will have at least.
    pub fn position(&self) -> u64 {
        self.next_lsn
    }
}

impl Engine {
    /// Follows shard `shard`'s committed events from `from_lsn` on (1 = from the start of what is kept).
    pub fn subscribe(&self, shard: usize, from_lsn: u64) -> Result<Subscription, FeedError> {
        if shard >= self.shards() {
            return Err(FeedError::NoShard(shard));
        }
        let durable = self.durable_watch(shard);
        let reader = JournalReader::open(&self.shard_dir(shard).join("journal"), from_lsn.max(1), durable.clone())?;
        Ok(Subscription { shard, reader, durable, next_lsn: from_lsn.max(1) })
    }

    /// A named consumer's saved cursor for `shard`: the next LSN it needs (1 if new).
    pub fn feed_cursor(&self, name: &str, shard: usize) -> u64 {
        self.cursors().get(name, shard)
    }

    /// Saves a named consumer's cursor (the next LSN it needs) durably; checkpoints keep the journal from
    /// there on. Registering a name the first time pins the journal from LSN 1 for it.
    pub fn advance_feed_cursor(&self, name: &str, shard: usize, next_lsn: u64) -> Result<(), FeedError> {
        self.cursors().set(name, shard, next_lsn)
    }
}

/// Durable named cursors, one small file per consumer.
pub(crate) struct CursorBook {
    dir: PathBuf,
    shards: usize,
    cursors: Mutex<HashMap<String, Vec<u64>>>,
}

impl CursorBook {
    pub(crate) fn open(dir: &Path, shards: usize) -> Result<CursorBook, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let mut cursors = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "cursor") {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                let text = std::fs::read_to_string(&path)?;
                let lsns: Vec<u64> = text.split_whitespace().filter_map(|t| t.parse().ok()).collect();
                if lsns.len() == shards {
                    cursors.insert(name, lsns);
                }
            }
        }
        Ok(CursorBook { dir: dir.to_path_buf(), shards, cursors: Mutex::new(cursors) })
    }

    pub(crate) fn get(&self, name: &str, shard: usize) -> u64 {
        self.cursors.lock().get(name).and_then(|v| v.get(shard).copied()).unwrap_or(1)
    }

    pub(crate) fn set(&self, name: &str, shard: usize, next_lsn: u64) -> Result<(), FeedError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || shard >= self.shards {
            return Err(FeedError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "cursor names are [A-Za-z0-9_-]+")));
        }
        let mut all = self.cursors.lock();
        let lsns = all.entry(name.to_string()).or_insert_with(|| vec![1; self.shards]);
        lsns[shard] = next_lsn;
        let text: Vec<String> = lsns.iter().map(u64::to_string).collect();
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text.join(" "))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(format!("{name}.cursor")))?;
        Ok(())
    }

    /// The oldest LSN any consumer still needs on `shard` (u64::MAX when nobody is registered).
    pub(crate) fn min(&self, shard: usize) -> u64 {
        self.cursors.lock().values().filter_map(|v| v.get(shard).copied()).min().unwrap_or(u64::MAX)
    }
}
