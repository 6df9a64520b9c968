//! Reading committed records: a tailing reader for the change feed and replay, and `read_all` for recovery.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::durable::DurableWatch;
use super::format::{
    FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, decode_frame_header, decode_segment_header, segment_file_name, verify_frame_body,
};
use super::segment::{SegmentScan, corrupt, follows, list_segments, read_up_to, scan_segment};
use super::{JournalError, Lsn, Record};

// Bytes fetched per read syscall; a frame larger than this gets a read of its own size.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// Reads committed records from `from_lsn` on, never beyond the durable LSN. Keeps working while the writer
/// appends, rotates and removes old segments (an open segment file stays readable after deletion).
pub struct JournalReader {
    dir: PathBuf,
    durable: DurableWatch,
    from_lsn: Lsn,
    segment: Option<OpenSegment>,
    /// LSN of the frame at `segment.offset`.
    next_lsn: Lsn,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Frames up to this LSN were durable, hence completely written, when `buf` was filled; bytes of later
    /// frames in `buf` may be stale and are read again.
    buf_trusted_lsn: Lsn,
}

struct OpenSegment {
    file: File,
    path: PathBuf,
    offset: u64,
}

enum Step {
    /// The open segment ends here; the next record is in the segment that starts at `next_lsn`.
    SegmentEnd,
    Frame(Record),
    Skipped,
}

impl JournalReader {
    /// A reader starting at `from_lsn` (0 is treated as 1). Fails with [`JournalError::LsnRemoved`] if
    /// `from_lsn` is below the oldest retained segment.
    pub fn open(dir: &Path, from_lsn: Lsn, durable: DurableWatch) -> Result<JournalReader, JournalError> {
        let from_lsn = from_lsn.max(1);
        let segments = list_segments(dir)?;
        if let Some(oldest) = segments.first()
            && from_lsn < oldest.first_lsn
        {
            return Err(JournalError::LsnRemoved { requested: from_lsn, oldest: oldest.first_lsn });
        }
        Ok(JournalReader {
            dir: dir.to_path_buf(),
            durable,
            from_lsn,
            segment: None,
            next_lsn: from_lsn,
            buf: Vec::new(),
            buf_offset: 0,
            buf_trusted_lsn: 0,
        })
    }

    /// LSN of the next record this reader returns.
    pub fn position(&self) -> Lsn {
        self.next_lsn.max(self.from_lsn)
    }

    /// The next record with `lsn <= durable`, or `None` if caught up (never blocks; wait on the
    /// [`DurableWatch`] for more).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>, JournalError> {
        let durable = self.durable.get();
        if self.segment.is_none() {
            if self.from_lsn > durable {
                return Ok(None);
            }
            self.open_segment_holding(self.from_lsn)?;
        }
        // Each pass consumes one frame or opens the next segment; skipping up to `from_lsn` happens only
        // within the first segment, so the passes are bounded by its frame count plus the segment count.
        loop {
            if self.next_lsn > durable {
                return Ok(None);
            }
            match self.step()? {
                Step::Frame(record) => return Ok(Some(record)),
                Step::Skipped => {}
                Step::SegmentEnd => self.open_segment_starting(self.next_lsn)?,
            }
        }
    }

    /// Reads the durable frame at the current position.
    fn step(&mut self) -> Result<Step, JournalError> {
        let (offset, available) = self.buffer(FRAME_HEADER_BYTES)?;
        if available == 0 {
            return Ok(Step::SegmentEnd);
        }
        let Some(header_bytes) = self.buffered(offset).first_chunk::<FRAME_HEADER_BYTES>().copied() else {
            return Err(self.corrupt_at(offset, "durable frame has a short header".to_owned()));
        };
        let header = decode_frame_header(&header_bytes).map_err(|err| self.corrupt_at(offset, err.to_string()))?;
        if header.lsn != self.next_lsn {
            let reason = format!("frame lsn {} where {} was expected", header.lsn, self.next_lsn);
            return Err(self.corrupt_at(offset, reason));
        }
        let frame_len = header.frame_len();
        if self.buffer(frame_len)?.1 < frame_len {
            return Err(self.corrupt_at(offset, "durable frame is short".to_owned()));
        }
        let body = &self.buffered(offset)[FRAME_HEADER_BYTES..frame_len];
        verify_frame_body(&header_bytes, &header, body).map_err(|err| self.corrupt_at(offset, err.to_string()))?;
        let record = (header.lsn >= self.from_lsn).then(|| {
            let payload = &body[..header.payload_len as usize];
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
            aligned.extend_from_slice(payload);
            Record { lsn: header.lsn, kind: header.kind, schema: header.schema, payload: aligned }
        });
        if let Some(segment) = self.segment.as_mut() {
            segment.offset += frame_len as u64;
        }
        self.next_lsn += 1;
        Ok(record.map_or(Step::Skipped, Step::Frame))
    }

    /// Buffered bytes from file offset `offset` on (`offset` lies within the buffer).
    fn buffered(&self, offset: u64) -> &[u8] {
        let start = (offset - self.buf_offset) as usize;
        &self.buf[start..]
    }

    fn corrupt_at(&self, offset: u64, reason: String) -> JournalError {
        let path = self.segment.as_ref().map_or(&self.dir, |segment| &segment.path);
        corrupt(path, offset, format!("lsn {}: {reason}", self.next_lsn))
    }

    /// Makes at least `need` bytes at the current offset available in `buf` if the file has them, reading
    /// again unless the buffered bytes are trustworthy for the frame `next_lsn`. Returns the current offset
    /// and the bytes available from it.
    fn buffer(&mut self, need: usize) -> Result<(u64, usize), JournalError> {
        let Some(segment) = self.segment.as_mut() else {
            return Err(io::Error::other("journal reader has no open segment").into());
        };
        let offset = segment.offset;
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if self.next_lsn <= self.buf_trusted_lsn && offset >= self.buf_offset && offset + need as u64 <= buf_end {
            return Ok((offset, (buf_end - offset) as usize));
        }
        // Read the durable LSN before the bytes: every frame up to it is completely in the file by now.
        self.buf_trusted_lsn = self.durable.get();
        self.buf.resize(need.max(READ_CHUNK_BYTES), 0);
        segment.file.seek(SeekFrom::Start(offset))?;
        let got = read_up_to(&mut segment.file, &mut self.buf)?;
        self.buf.truncate(got);
        self.buf_offset = offset;
        Ok((offset, got))
    }

    /// Opens the segment holding `lsn` (the newest one starting at or before it).
    fn open_segment_holding(&mut self, lsn: Lsn) -> Result<(), JournalError> {
        let segments = list_segments(&self.dir)?;
        match segments.iter().rev().find(|segment| segment.first_lsn <= lsn) {
            Some(segment) => self.open_segment_starting(segment.first_lsn),
            None => Err(self.missing(lsn, segments.first().map(|s| s.first_lsn))),
        }
    }

    /// Opens the segment whose first record is `first_lsn` and positions at its first frame.
    fn open_segment_starting(&mut self, first_lsn: Lsn) -> Result<(), JournalError> {
        let path = self.dir.join(segment_file_name(first_lsn));
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let oldest = list_segments(&self.dir)?.first().map(|s| s.first_lsn);
                return Err(self.missing(first_lsn, oldest));
            }
            Err(err) => return Err(err.into()),
        };
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        if read_up_to(&mut file, &mut header)? < SEGMENT_HEADER_BYTES {
            return Err(corrupt(&path, 0, "segment header is short"));
        }
        let header_lsn = decode_segment_header(&header).map_err(|reason| corrupt(&path, 0, reason))?;
        if header_lsn != first_lsn {
            return Err(corrupt(&path, 0, format!("header first_lsn {header_lsn} does not match the file name")));
        }
        self.segment = Some(OpenSegment { file, path, offset: SEGMENT_HEADER_BYTES as u64 });
        self.next_lsn = first_lsn;
        self.buf.clear();
        self.buf_offset = 0;
        self.buf_trusted_lsn = 0;
        Ok(())
    }

    fn missing(&self, lsn: Lsn, oldest: Option<Lsn>) -> JournalError {
        match oldest {
            Some(oldest) if oldest > lsn => JournalError::LsnRemoved { requested: lsn, oldest },
            _ => corrupt(&self.dir, 0, format!("no segment holds durable lsn {lsn}")),
        }
    }
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader")
            .field("dir", &self.dir)
            .field("position", &self.position())
            .field("durable", &self.durable.get())
            .finish_non_exhaustive()
    }
}

/// Every valid record with `lsn >= from_lsn`, in order, stopping at a torn tail of the last segment (which
/// it leaves as it is). For recovery: open the [`super::JournalWriter`] first if what is read must be
/// durable (opening cuts the tail and syncs what a killed process left in the page cache).
pub fn read_all(dir: &Path, from_lsn: Lsn) -> Result<Vec<Record>, JournalError> {
    let from_lsn = from_lsn.max(1);
    let segments = list_segments(dir)?;
    let Some(oldest) = segments.first() else {
        return Ok(Vec::new());
    };
    if from_lsn < oldest.first_lsn {
        return Err(JournalError::LsnRemoved { requested: from_lsn, oldest: oldest.first_lsn });
    }
    let start = segments.iter().rposition(|segment| segment.first_lsn <= from_lsn).unwrap_or(0);
    let count = segments.len();
    let mut records = Vec::new();
    let mut next_lsn: Option<Lsn> = None;
    for (index, segment) in segments.iter().enumerate().skip(start) {
        let is_last = index + 1 == count;
        follows(segment, next_lsn)?;
        match scan_segment(segment, from_lsn, Some(&mut records))? {
            SegmentScan::TornHeader { .. } if is_last => break,
            SegmentScan::TornHeader { reason } => return Err(corrupt(&segment.path, 0, reason)),
            SegmentScan::Frames(scan) => {
                if let Some((offset, reason)) = scan.bad
                    && !is_last
                {
                    return Err(corrupt(&segment.path, offset, reason));
                }
                next_lsn = Some(scan.next_lsn);
            }
        }
    }
    debug_assert!(records.windows(2).all(|pair| pair[1].lsn == pair[0].lsn + 1));
    Ok(records)
}
