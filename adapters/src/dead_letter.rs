//! Records a target refused for what they are, kept under the data directory with the reason (one JSON
//! line each), so nothing is lost and an operator can see and replay them.

use std::io::Write;
use std::path::PathBuf;

use kassa_engine::FeedRecord;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub adapter: String,
    pub shard: usize,
    pub lsn: u64,
    /// The event's kind (`payment_put`, …).
    pub event: String,
    pub reason: String,
    /// RFC 3339.
    pub at: String,
    /// The record itself, for inspection.
    pub record: String,
}

/// One adapter's dead-letter file: `<data_dir>/adapters/<name>/dead-letters.jsonl`.
pub struct DeadLetters {
    path: PathBuf,
    lock: Mutex<()>,
}

impl DeadLetters {
    pub fn new(data_dir: &std::path::Path, adapter: &str) -> DeadLetters {
        DeadLetters { path: data_dir.join("adapters").join(adapter).join("dead-letters.jsonl"), lock: Mutex::new(()) }
    }

    /// Appends one and syncs it: the adapter moves its cursor past the record only after this.
    pub fn record(&self, adapter: &str, record: &FeedRecord, reason: &str) -> std::io::Result<()> {
        let letter = DeadLetter {
            adapter: adapter.to_string(),
            shard: record.shard,
            lsn: record.lsn,
            event: record.event.name().to_string(),
            reason: reason.to_string(),
            at: kassa_engine::wire::rfc3339(kassa_engine::now_micros()),
            record: format!("{:?}", record.event),
        };
        let line = serde_json::to_string(&letter).map_err(std::io::Error::other)?;
        let _one_writer = self.lock.lock();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_data()
    }

    /// Every dead letter so far, oldest first (an unreadable line is skipped, not fatal).
    pub fn list(&self) -> Vec<DeadLetter> {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return Vec::new() };
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}
