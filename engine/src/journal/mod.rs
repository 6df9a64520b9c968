//! The per-shard write-ahead journal: append-only segment files of framed, CRC-checked records, each with a
//! log sequence number (LSN), group-committed with one write and one `fdatasync` per batch.
//!
//! The shard thread owns a [`JournalWriter`]: it [`append`](JournalWriter::append)s the events of every
//! applied command (no I/O), calls [`flush`](JournalWriter::flush) to hand everything pending to the
//! journal's I/O thread when no batch is in flight, selects on
//! [`completions`](JournalWriter::completions) together with its mailbox, and answers clients once
//! [`complete`](JournalWriter::complete) reports their LSN durable. Readers ([`JournalReader`],
//! [`read_all`]) only ever see durable records. The I/O thread uses io_uring when the kernel allows it and
//! plain `write` + `fdatasync` otherwise (see [`io`]).
//!
//! Layout on disk: see [`format`].

pub mod format;
pub mod io;

mod durable;
mod reader;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use durable::DurableWatch;
pub use reader::{JournalReader, read_all};
pub(crate) use segment::{start_empty_at, sync_dir as sync_path};
pub use writer::JournalWriter;

/// The retained segments of the journal in `dir`: each one's first LSN and size in bytes, oldest first.
pub(crate) fn segment_sizes(dir: &std::path::Path) -> Result<Vec<(Lsn, u64)>, JournalError> {
    let mut out = Vec::new();
    for segment in segment::list_segments(dir)? {
        // A segment removed meanwhile holds nothing any more.
        let bytes = std::fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0);
        out.push((segment.first_lsn, bytes));
    }
    Ok(out)
}

/// Log sequence number. The first record of a journal has LSN 1; 0 means "nothing".
pub type Lsn = u64;

/// Default size at which the active segment is closed and a new one started.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 << 20;

/// Which I/O backend the journal's I/O thread uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring if it can be set up here, otherwise the portable backend (logged).
    Auto,
    /// io_uring or an error ([`JournalError::UringUnavailable`]).
    Uring,
    /// Plain `std::fs::File` writes and `sync_data` on a helper thread.
    Portable,
    /// The same writes and `sync_data` on the shard's own thread, which waits for each sync (its mailbox
    /// fills meanwhile and the next batch carries all of it): no helper thread and no hand-off. The
    /// default: it measured cheapest per durable command here (BENCHMARKS.md).
    #[default]
    Inline,
}

/// Configuration of one journal (one per shard).
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Directory holding this journal's segment files (created if missing).
    pub dir: PathBuf,
    /// A new segment starts before a batch that would take the active one beyond this size.
    pub segment_bytes_max: u64,
    pub io: IoMode,
}

impl JournalConfig {
    /// Defaults: 64 MiB segments, [`IoMode::Auto`].
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig { dir: dir.into(), segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT, io: IoMode::Auto }
    }
}

/// One committed journal record.
#[derive(Debug, Clone)]
pub struct Record {
    pub lsn: Lsn,
    pub kind: u16,
    pub schema: u16,
    /// 16-byte aligned so that rkyv archives can be accessed in place.
    pub payload: rkyv::util::AlignedVec<16>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.lsn == other.lsn
            && self.kind == other.kind
            && self.schema == other.schema
            && self.payload.as_slice() == other.payload.as_slice()
    }
}

impl Eq for Record {}

/// Everything that can go wrong in the journal.
#[derive(thiserror::Error, Debug)]
pub enum JournalError {
    #[error("journal I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal corrupt in {segment:?} at byte {offset}: {reason}")]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    #[error("LSN {requested} is no longer in the journal (oldest retained LSN is {oldest})")]
    LsnRemoved { requested: Lsn, oldest: Lsn },
    #[error("io_uring is unavailable: {0}")]
    UringUnavailable(#[source] std::io::Error),
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("invalid journal configuration: {0}")]
    InvalidConfig(String),
    #[error("journal stopped after an earlier I/O failure ({0}); reopen it to recover")]
    Failed(String),
    #[error("completion received while no batch was in flight")]
    UnexpectedCompletion,
}
