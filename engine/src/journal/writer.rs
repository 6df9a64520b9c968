//! The shard thread's side of the journal: buffering frames, group commit, recovery of a torn tail.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;

use super::durable::DurableWatch;
use super::format::{
    FRAME_HEADER_BYTES, PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES, SEGMENT_VERSION_UNMARKED, encode_frame, encode_segment_header,
    mark_batch_end,
};
use super::io::{Batch, Completion, IoThread, NewSegment};
use super::segment::{SegmentFile, SegmentScan, corrupt, follows, list_segments, scan_segment, sync_dir};
use super::{JournalConfig, JournalError, Lsn};

// Initial capacity of the pending buffer: a few hundred small frames without reallocation.
const PENDING_BYTES_INITIAL: usize = 64 << 10;

/// Owned by the shard thread. See the module documentation of [`crate::journal`] for the protocol.
pub struct JournalWriter {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Oldest first; the last one is the active segment (its creation may still be in flight).
    segments: VecDeque<SegmentFile>,
    /// Bytes of the active segment including its header and every submitted batch.
    active_len_bytes: u64,
    active_frames: u64,
    /// Encoded frames not yet handed to the I/O thread.
    pending: Vec<u8>,
    pending_frames: u64,
    /// Where the last pending frame starts (marked as its batch's end when the batch is handed over).
    last_frame_at: usize,
    /// The active segment is a version 1 one (no batch marks): the next batch starts a new segment.
    active_unmarked: bool,
    next_lsn: Lsn,
    in_flight_lsn: Option<Lsn>,
    durable: DurableWatch,
    /// Set by the first I/O failure: after a failed fdatasync the page cache cannot be trusted, so the
    /// journal stops and must be reopened (which re-verifies what is on disk).
    failure: Option<String>,
    io: IoThread,
}

impl JournalWriter {
    /// Opens (creating the directory if needed), verifies every frame of every segment and cuts a torn tail
    /// of the last segment. A bad frame in any other segment is [`JournalError::Corrupt`].
    pub fn open(cfg: JournalConfig) -> Result<JournalWriter, JournalError> {
        let segment_bytes_min = (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES) as u64;
        if cfg.segment_bytes_max < segment_bytes_min {
            return Err(JournalError::InvalidConfig(format!("segment_bytes_max {} is below {segment_bytes_min}", cfg.segment_bytes_max)));
        }
        std::fs::create_dir_all(&cfg.dir)?;
        let recovered = recover(&cfg.dir)?;
        let active = recovered.segments.back().map(|segment| segment.path.clone());
        let io = IoThread::start(cfg.io, active)?;
        tracing::info!(
            dir = %cfg.dir.display(),
            segments = recovered.segments.len(),
            next_lsn = recovered.next_lsn,
            backend = io.backend().name(),
            "journal opened"
        );
        Ok(JournalWriter {
            dir: cfg.dir,
            segment_bytes_max: cfg.segment_bytes_max,
            segments: recovered.segments,
            active_len_bytes: recovered.active_len_bytes,
            active_frames: recovered.active_frames,
            pending: Vec::with_capacity(PENDING_BYTES_INITIAL),
            pending_frames: 0,
            last_frame_at: 0,
            active_unmarked: recovered.active_unmarked,
            next_lsn: recovered.next_lsn,
            in_flight_lsn: None,
            durable: DurableWatch::new(recovered.next_lsn - 1),
            failure: None,
            io,
        })
    }

    /// "io_uring" or "portable".
    pub fn io_backend_name(&self) -> &'static str {
        self.io.backend().name()
    }

    /// Buffers one frame into the pending batch and returns its LSN. No I/O.
    ///
    /// # Panics
    /// If `payload` exceeds [`PAYLOAD_BYTES_MAX`] (16 MiB): the engine's own events never come close; use
    /// [`JournalWriter::try_append`] for payloads of unchecked size.
    pub fn append(&mut self, kind: u16, schema: u16, payload: &[u8]) -> Lsn {
        match self.try_append(kind, schema, payload) {
            Ok(lsn) => lsn,
            Err(err) => panic!("journal append: {err}"),
        }
    }

    /// [`JournalWriter::append`] that refuses oversized payloads instead of panicking.
    pub fn try_append(&mut self, kind: u16, schema: u16, payload: &[u8]) -> Result<Lsn, JournalError> {
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(JournalError::PayloadTooLarge { len: payload.len(), max: PAYLOAD_BYTES_MAX });
        }
        let lsn = self.next_lsn;
        self.last_frame_at = self.pending.len();
        encode_frame(&mut self.pending, lsn, kind, schema, payload);
        self.next_lsn += 1;
        self.pending_frames += 1;
        debug_assert!(self.pending_frames < self.next_lsn);
        Ok(lsn)
    }

    /// Group commit: if no batch is in flight and frames are pending, hands them to the I/O thread (one
    /// write + one fdatasync) and returns the batch's last LSN; otherwise `None` (the pending frames ride in
    /// the next batch). Also `None` once the journal has failed (see [`JournalWriter::sync_all`]).
    pub fn flush(&mut self) -> Option<Lsn> {
        if self.failure.is_some() || self.in_flight_lsn.is_some() || self.pending.is_empty() {
            return None;
        }
        let batch_len = self.pending.len() as u64;
        let last_lsn = self.next_lsn - 1;
        let first_lsn = self.next_lsn - self.pending_frames;
        // A batch never spans segments: rotate before it when it would overfill a non-empty segment.
        let rotate = match self.segments.back() {
            None => true,
            Some(_) => self.active_unmarked || (self.active_frames > 0 && self.active_len_bytes + batch_len > self.segment_bytes_max),
        };
        mark_batch_end(&mut self.pending[self.last_frame_at..]);
        let new_segment = rotate.then(|| SegmentFile::new(&self.dir, first_lsn));
        let offset = if rotate { SEGMENT_HEADER_BYTES as u64 } else { self.active_len_bytes };
        let replacement = self.io.take_spare().unwrap_or_else(|| Vec::with_capacity(PENDING_BYTES_INITIAL));
        let bytes = std::mem::replace(&mut self.pending, replacement);
        let batch = Batch {
            new_segment: new_segment.as_ref().map(|segment| NewSegment {
                path: segment.path.clone(),
                dir: self.dir.clone(),
                header: encode_segment_header(first_lsn),
            }),
            offset,
            bytes,
            last_lsn,
        };
        if let Err(batch) = self.io.submit(batch) {
            self.pending = batch.bytes;
            self.fail("the journal I/O thread stopped".to_owned());
            return None;
        }
        if let Some(segment) = new_segment {
            self.segments.push_back(segment);
            self.active_len_bytes = SEGMENT_HEADER_BYTES as u64;
            self.active_frames = 0;
            self.active_unmarked = false;
        }
        self.active_len_bytes += batch_len;
        self.active_frames += self.pending_frames;
        self.pending_frames = 0;
        self.in_flight_lsn = Some(last_lsn);
        debug_assert_eq!(offset + batch_len, self.active_len_bytes);
        Some(last_lsn)
    }

    /// Completion channel of the I/O thread: each message is the durable-up-to LSN or the I/O error.
    pub fn completions(&self) -> &Receiver<Completion> {
        self.io.completions()
    }

    /// Records a completion received from [`JournalWriter::completions`]: advances the durable LSN and
    /// marks nothing in flight. An I/O error fails the journal for good.
    pub fn complete(&mut self, msg: Completion) -> Result<Lsn, JournalError> {
        let Some(expected) = self.in_flight_lsn.take() else {
            return Err(JournalError::UnexpectedCompletion);
        };
        match msg {
            Ok(lsn) if lsn == expected => {
                self.durable.advance(lsn);
                Ok(lsn)
            }
            Ok(lsn) => {
                self.fail(format!("completion for lsn {lsn}, expected {expected}"));
                Err(JournalError::UnexpectedCompletion)
            }
            Err(err) => {
                self.fail(format!("batch up to lsn {expected} failed: {err}"));
                Err(JournalError::Io(err))
            }
        }
    }

    /// Flushes everything pending and waits until it is durable; returns the durable LSN.
    pub fn sync_all(&mut self) -> Result<Lsn, JournalError> {
        if self.in_flight_lsn.is_some() {
            self.wait_completion()?;
        }
        if let Some(failure) = &self.failure {
            return Err(JournalError::Failed(failure.clone()));
        }
        if self.flush().is_some() {
            self.wait_completion()?;
        }
        if let Some(failure) = &self.failure {
            return Err(JournalError::Failed(failure.clone()));
        }
        debug_assert_eq!(self.durable.get(), self.next_lsn - 1);
        Ok(self.durable.get())
    }

    fn wait_completion(&mut self) -> Result<Lsn, JournalError> {
        match self.io.completions().recv() {
            Ok(msg) => self.complete(msg),
            Err(_) => {
                self.in_flight_lsn = None;
                let reason = "the journal I/O thread stopped".to_owned();
                self.fail(reason.clone());
                Err(JournalError::Failed(reason))
            }
        }
    }

    fn fail(&mut self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "journal failed");
        self.failure.get_or_insert(reason);
    }

    /// Highest LSN known durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable.get()
    }

    /// LSN the next appended record gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// LSN of the batch in flight, if any.
    pub fn in_flight_lsn(&self) -> Option<Lsn> {
        self.in_flight_lsn
    }

    /// Bytes appended but not yet handed to the I/O thread (for back-pressure in the shard).
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Shared durable LSN for readers.
    pub fn durable_watch(&self) -> DurableWatch {
        self.durable.clone()
    }

    /// Deletes whole segment files all of whose records have an LSN below `lsn`, oldest first, never the
    /// active segment. Returns the number of files deleted. Each deletion is made durable before the next,
    /// so a crash never leaves a gap between the remaining segments.
    pub fn remove_below(&mut self, lsn: Lsn) -> Result<usize, JournalError> {
        let mut removed = 0;
        // Segment 0 holds LSNs [first_0, first_1); it is covered when first_1 <= lsn.
        while self.segments.len() >= 2 && self.segments[1].first_lsn <= lsn {
            let Some(segment) = self.segments.pop_front() else {
                break;
            };
            match std::fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    self.segments.push_front(segment);
                    return Err(err.into());
                }
            }
            sync_dir(&self.dir)?;
            tracing::debug!(segment = %segment.path.display(), "journal segment removed");
            removed += 1;
        }
        debug_assert!(!self.segments.is_empty() || removed == 0);
        Ok(removed)
    }
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("dir", &self.dir)
            .field("backend", &self.io_backend_name())
            .field("next_lsn", &self.next_lsn)
            .field("durable_lsn", &self.durable.get())
            .field("in_flight_lsn", &self.in_flight_lsn)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

/// What `open` learns from the directory.
struct Recovered {
    segments: VecDeque<SegmentFile>,
    next_lsn: Lsn,
    active_len_bytes: u64,
    active_frames: u64,
    active_unmarked: bool,
}

/// Verifies all segments, cuts a torn tail of the last one (and the frames of a batch it holds only in
/// part) and makes the survivors durable.
fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    let listed = list_segments(dir)?;
    let count = listed.len();
    let mut segments = VecDeque::with_capacity(count);
    let mut next_lsn: Option<Lsn> = None;
    let mut active_len_bytes = 0;
    let mut active_unmarked = false;
    for (index, segment) in listed.into_iter().enumerate() {
        let is_last = index + 1 == count;
        follows(&segment, next_lsn)?;
        match scan_segment(&segment, Lsn::MAX, None)? {
            SegmentScan::TornHeader { reason } if is_last => {
                // Creation syncs the header before any frame, so this file never held a durable record.
                tracing::warn!(segment = %segment.path.display(), %reason, "removing a half-created journal segment");
                std::fs::remove_file(&segment.path)?;
                sync_dir(dir)?;
                next_lsn.get_or_insert(segment.first_lsn);
            }
            SegmentScan::TornHeader { reason } => {
                return Err(corrupt(&segment.path, 0, reason));
            }
            SegmentScan::Frames(mut scan) => {
                if let Some((offset, reason)) = &scan.bad
                    && !is_last
                {
                    return Err(corrupt(&segment.path, *offset, reason.clone()));
                }
                if is_last && scan.batches_end < scan.valid_end {
                    // A batch's write ended part-way (the process was killed in it): none of it was
                    // acknowledged, and replaying part of it could split a command.
                    let frames = scan.next_lsn - scan.batches_next_lsn;
                    tracing::warn!(segment = %segment.path.display(), frames, "cutting the frames of a batch the journal holds only in part");
                    (scan.valid_end, scan.next_lsn) = (scan.batches_end, scan.batches_next_lsn);
                    scan.bad.get_or_insert((scan.batches_end, "a batch without its end".to_owned()));
                }
                if let Some((offset, reason)) = scan.bad {
                    let cut_bytes = scan.file_len - scan.valid_end;
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset,
                        cut_bytes,
                        %reason,
                        "cutting the torn tail of the journal"
                    );
                    let file = OpenOptions::new().write(true).open(&segment.path)?;
                    file.set_len(scan.valid_end)?;
                    file.sync_all()?;
                }
                next_lsn = Some(scan.next_lsn);
                active_len_bytes = scan.valid_end;
                active_unmarked = scan.version == SEGMENT_VERSION_UNMARKED;
                segments.push_back(segment);
            }
        }
    }
    if let Some(last) = segments.back() {
        // Frames a killed process left in the page cache are only durable once synced; replay treats them so.
        OpenOptions::new().write(true).open(&last.path)?.sync_all()?;
        sync_dir(dir)?;
    }
    let next_lsn = next_lsn.unwrap_or(1);
    let active_frames = segments.back().map_or(0, |last| next_lsn - last.first_lsn);
    debug_assert!(next_lsn >= 1);
    Ok(Recovered { segments, next_lsn, active_len_bytes, active_frames, active_unmarked })
}
