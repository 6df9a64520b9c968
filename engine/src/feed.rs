//! The change feed: the journal itself, read from a `(shard, lsn)` cursor. Replication and adapters
//! follow it; delivery is at-least-once and ordered per shard, and each record carries the entity version
//! (= the LSN of the change) so a consumer can apply every change exactly once.
//!
//! Consumers that register a named cursor here keep the journal segments they still need from being
//! deleted by checkpoints, within a retention cap: a cursor that pins more than
//! `EngineConfig::feed_retention_bytes` of journal, or pins any while not advanced for
//! `feed_retention_age`, is dropped at the next checkpoint. Its consumer then finds its position gone
//! ([`FeedError::NeedsSnapshot`]) and starts again from a snapshot ([`Engine::snapshot`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
    /// The records from `requested` on are no longer kept (retention dropped the consumer's cursor, or it
    /// never registered one): copy a snapshot and follow from after it.
    #[error("shard {shard}: lsn {requested} is no longer in the journal (oldest kept: {oldest}); start from a snapshot")]
    NeedsSnapshot { shard: usize, requested: u64, oldest: u64 },
    #[error("journal: {0}")]
    Journal(JournalError),
    #[error("undecodable record at lsn {lsn}: {reason}")]
    Decode { lsn: u64, reason: String },
    #[error("no shard {0}")]
    NoShard(usize),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl FeedError {
    fn from_journal(shard: usize, e: JournalError) -> FeedError {
        match e {
            JournalError::LsnRemoved { requested, oldest } => FeedError::NeedsSnapshot { shard, requested, oldest },
            other => FeedError::Journal(other),
        }
    }
}

/// Where a named consumer's cursor stands on one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedCursor {
    /// Never registered: it pins nothing.
    New,
    /// The next LSN the consumer needs; the journal from there on is kept.
    At(u64),
    /// Dropped by the retention cap: it pins nothing, and the consumer needs a snapshot.
    Dropped,
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
            let Some(record) = self.reader.next().map_err(|e| FeedError::from_journal(self.shard, e))? else { return Ok(None) };
            self.next_lsn = record.lsn + 1;
            if record.kind != EVENT_KIND {
                continue;
            }
            let event = crate::migrate::decode_event(record.schema, &record.payload)
                .map_err(|reason| FeedError::Decode { lsn: record.lsn, reason })?;
            return Ok(Some(FeedRecord { shard: self.shard, lsn: record.lsn, event }));
        }
    }

    /// Waits up to `timeout` for the next committed event (blocking the thread).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<FeedRecord>, FeedError> {
        if let Some(r) = self.try_next()? {
            return Ok(Some(r));
        }
        self.durable.wait_beyond(self.next_lsn.saturating_sub(1), timeout);
        self.try_next()
    }

    /// Up to `max` committed events, waiting (asynchronously: no thread per subscriber) until there is at
    /// least one. Reading the journal itself is plain file I/O of recently written, page-cached segments.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<FeedRecord>, FeedError> {
        loop {
            let mut out = Vec::new();
            while out.len() < max.max(1) {
                match self.try_next()? {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            self.durable.wait_beyond_async(self.next_lsn.saturating_sub(1)).await;
        }
    }

    /// The LSN the next record will have at least.
    pub fn position(&self) -> u64 {
        self.next_lsn
    }

    /// The shard's durable LSN now: how far the feed goes (for lag figures).
    pub fn head(&self) -> u64 {
        self.durable.get()
    }
}

impl Engine {
    /// Follows shard `shard`'s committed events from `from_lsn` on (1 = from the start of what is kept).
    pub fn subscribe(&self, shard: usize, from_lsn: u64) -> Result<Subscription, FeedError> {
        if shard >= self.shards() {
            return Err(FeedError::NoShard(shard));
        }
        let durable = self.durable_watch(shard);
        let reader = JournalReader::open(&self.shard_dir(shard).join("journal"), from_lsn.max(1), durable.clone())
            .map_err(|e| FeedError::from_journal(shard, e))?;
        Ok(Subscription { shard, reader, durable, next_lsn: from_lsn.max(1) })
    }

    /// A named consumer's saved cursor for `shard`.
    pub fn feed_cursor(&self, name: &str, shard: usize) -> FeedCursor {
        self.cursors().get(name, shard)
    }

    /// Saves a named consumer's cursor (the next LSN it needs) durably; checkpoints keep the journal from
    /// there on, within the retention cap. Also re-registers a cursor that retention dropped.
    pub fn advance_feed_cursor(&self, name: &str, shard: usize, next_lsn: u64) -> Result<(), FeedError> {
        self.cursors().set(name, shard, next_lsn)
    }
}

/// What one named cursor pins on one shard, as of the last checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorFigures {
    pub name: String,
    pub shard: usize,
    pub cursor: FeedCursor,
    /// Journal bytes kept only for this cursor.
    pub pinned_bytes: u64,
}

/// The retention cap of named cursors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub bytes: u64,
    pub age: Duration,
}

/// Cursor values that pin nothing, kept in the cursor file as such: a shard the consumer never registered
/// on (LSNs start at 1), and a cursor dropped by retention.
const UNSET: u64 = 0;
const DROPPED: u64 = u64::MAX;

struct Cursor {
    lsns: Vec<u64>,
    /// When each shard's cursor last moved (the file's time after a restart).
    advanced_at: Vec<SystemTime>,
    pinned_bytes: Vec<u64>,
}

/// Durable named cursors, one small file per consumer.
pub(crate) struct CursorBook {
    dir: PathBuf,
    shards: usize,
    cursors: Mutex<HashMap<String, Cursor>>,
    dropped_total: AtomicU64,
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
                let written = std::fs::metadata(&path)?.modified().unwrap_or_else(|_| SystemTime::now());
                if lsns.len() == shards {
                    cursors.insert(name, Cursor { lsns, advanced_at: vec![written; shards], pinned_bytes: vec![0; shards] });
                }
            }
        }
        Ok(CursorBook { dir: dir.to_path_buf(), shards, cursors: Mutex::new(cursors), dropped_total: AtomicU64::new(0) })
    }

    pub(crate) fn get(&self, name: &str, shard: usize) -> FeedCursor {
        match self.cursors.lock().get(name).and_then(|c| c.lsns.get(shard).copied()) {
            None | Some(UNSET) => FeedCursor::New,
            Some(DROPPED) => FeedCursor::Dropped,
            Some(lsn) => FeedCursor::At(lsn),
        }
    }

    pub(crate) fn set(&self, name: &str, shard: usize, next_lsn: u64) -> Result<(), FeedError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || shard >= self.shards {
            return Err(FeedError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "cursor names are [A-Za-z0-9_-]+")));
        }
        let mut all = self.cursors.lock();
        let shards = self.shards;
        let cursor = all.entry(name.to_string()).or_insert_with(|| Cursor {
            lsns: vec![UNSET; shards],
            advanced_at: vec![SystemTime::now(); shards],
            pinned_bytes: vec![0; shards],
        });
        cursor.lsns[shard] = next_lsn.clamp(1, DROPPED - 1);
        cursor.advanced_at[shard] = SystemTime::now();
        self.write(name, &cursor.lsns)
    }

    /// Forgets a consumer: it pins nothing from now on.
    pub(crate) fn remove(&self, name: &str) -> Result<(), FeedError> {
        if self.cursors.lock().remove(name).is_some() {
            std::fs::remove_file(self.dir.join(format!("{name}.cursor")))?;
        }
        Ok(())
    }

    fn write(&self, name: &str, lsns: &[u64]) -> Result<(), FeedError> {
        let text: Vec<String> = lsns.iter().map(u64::to_string).collect();
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text.join(" "))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(format!("{name}.cursor")))?;
        Ok(())
    }

    /// The oldest LSN any consumer still needs on `shard` (u64::MAX when nobody pins anything).
    pub(crate) fn min(&self, shard: usize) -> u64 {
        self.cursors.lock().values().filter_map(|c| c.lsns.get(shard).copied()).filter(|&lsn| lsn != UNSET).min().unwrap_or(DROPPED)
    }

    /// Applies the retention cap on `shard` before a checkpoint lets segments go: `segments` are the
    /// journal's (first LSN, bytes), `kept_for_store` the LSN from which the stores still need the journal.
    /// Returns the names of the cursors it dropped.
    pub(crate) fn enforce(&self, shard: usize, segments: &[(u64, u64)], kept_for_store: u64, cap: Retention) -> Vec<String> {
        let now = SystemTime::now();
        let mut dropped = Vec::new();
        let mut all = self.cursors.lock();
        for (name, cursor) in all.iter_mut() {
            let lsn = cursor.lsns[shard];
            // Bytes of the segments holding records at or after the cursor but wholly before what the
            // stores need: the journal this cursor alone keeps.
            let pinned: u64 = segments
                .iter()
                .zip(segments.iter().skip(1).map(|s| s.0))
                .filter(|((_, _), next_first)| *next_first > lsn && *next_first <= kept_for_store)
                .map(|((_, bytes), _)| *bytes)
                .sum();
            let idle = now.duration_since(cursor.advanced_at[shard]).unwrap_or_default();
            let pins = lsn != UNSET && lsn != DROPPED;
            if pins && pinned > 0 && (pinned > cap.bytes || idle > cap.age) {
                tracing::warn!(cursor = %name, shard, pinned_bytes = pinned, idle_s = idle.as_secs(), "feed cursor dropped by retention: its consumer needs a snapshot");
                cursor.lsns[shard] = DROPPED;
                cursor.pinned_bytes[shard] = 0;
                dropped.push(name.clone());
            } else {
                cursor.pinned_bytes[shard] = if pins { pinned } else { 0 };
            }
        }
        for name in &dropped {
            if let Err(e) = self.write(name, &all[name].lsns) {
                tracing::warn!(cursor = %name, error = %e, "saving a dropped cursor failed; it is dropped in memory");
            }
        }
        self.dropped_total.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        dropped
    }

    pub(crate) fn figures(&self) -> (Vec<CursorFigures>, u64) {
        let all = self.cursors.lock();
        let mut out = Vec::new();
        for (name, cursor) in all.iter() {
            for shard in 0..self.shards {
                let state = match cursor.lsns[shard] {
                    UNSET => continue,
                    DROPPED => FeedCursor::Dropped,
                    lsn => FeedCursor::At(lsn),
                };
                out.push(CursorFigures { name: name.clone(), shard, cursor: state, pinned_bytes: cursor.pinned_bytes[shard] });
            }
        }
        out.sort_by(|a, b| (&a.name, a.shard).cmp(&(&b.name, b.shard)));
        (out, self.dropped_total.load(Ordering::Relaxed))
    }
}
