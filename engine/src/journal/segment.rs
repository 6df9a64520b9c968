//! Listing segment files and verifying them frame by frame (used by recovery and by `JournalWriter::open`).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::format::{
    FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_VERSION_UNMARKED, decode_frame_header, decode_segment, parse_segment_file_name,
    segment_file_name, verify_frame_body,
};
use super::{JournalError, Lsn, Record};

const SCAN_BUFFER_BYTES: usize = 1 << 20;

/// One segment file of a journal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

impl SegmentFile {
    pub fn new(dir: &Path, first_lsn: Lsn) -> SegmentFile {
        SegmentFile { first_lsn, path: dir.join(segment_file_name(first_lsn)) }
    }
}

/// Segment files of `dir`, oldest first. A missing directory holds no segments.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first_lsn) = name.to_str().and_then(parse_segment_file_name) {
            segments.push(SegmentFile { first_lsn, path: entry.path() });
        }
    }
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// Outcome of verifying one segment file.
#[derive(Debug)]
pub(crate) enum SegmentScan {
    /// The file is no longer than a header and the header is incomplete or invalid: a segment creation that a
    /// crash cut short (creation syncs the header before any frame is written, so nothing was lost).
    TornHeader {
        reason: String,
    },
    Frames(FrameScan),
}

#[derive(Debug)]
pub(crate) struct FrameScan {
    /// LSN after the last valid frame (the segment's first LSN if it holds none).
    pub next_lsn: Lsn,
    /// Byte offset just past the last valid frame.
    pub valid_end: u64,
    pub file_len: u64,
    /// Offset and reason of the first invalid or incomplete frame, if the file does not end cleanly.
    pub bad: Option<(u64, String)>,
    /// Where the last whole batch ends, and the LSN after it (version 2 segments; in version 1 ones
    /// every valid frame counts as whole).
    pub batches_end: u64,
    pub batches_next_lsn: Lsn,
    /// The segment's format version.
    pub version: u32,
}

/// Checks that `segment` starts where the previous one ended (`next_lsn`, none for the first).
pub(crate) fn follows(segment: &SegmentFile, next_lsn: Option<Lsn>) -> Result<(), JournalError> {
    match next_lsn {
        Some(expected) if segment.first_lsn != expected => Err(corrupt(
            &segment.path,
            0,
            format!("segment starts at lsn {} but the previous one ends before {expected}", segment.first_lsn),
        )),
        _ => Ok(()),
    }
}

/// Verifies every frame of `segment`; records with `lsn >= collect_from` are pushed to `out` if given.
/// Header problems in a file longer than a header are `Corrupt` (whatever the segment's position).
pub(crate) fn scan_segment(
    segment: &SegmentFile,
    collect_from: Lsn,
    mut out: Option<&mut Vec<Record>>,
) -> Result<SegmentScan, JournalError> {
    let file = File::open(&segment.path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, file);

    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    let got = read_up_to(&mut reader, &mut header)?;
    if got < SEGMENT_HEADER_BYTES {
        return Ok(SegmentScan::TornHeader { reason: format!("segment header has {got} of {SEGMENT_HEADER_BYTES} bytes") });
    }
    let (first_lsn, version) = match decode_segment(&header) {
        Ok(decoded) => decoded,
        Err(reason) if file_len <= SEGMENT_HEADER_BYTES as u64 => {
            return Ok(SegmentScan::TornHeader { reason });
        }
        Err(reason) => return Err(corrupt(&segment.path, 0, reason)),
    };
    if first_lsn != segment.first_lsn {
        return Err(corrupt(&segment.path, 0, format!("header first_lsn {first_lsn} does not match the file name")));
    }

    let start = SEGMENT_HEADER_BYTES as u64;
    let mut scan =
        FrameScan { next_lsn: first_lsn, valid_end: start, file_len, bad: None, batches_end: start, batches_next_lsn: first_lsn, version };
    let mut body = Vec::new();
    // Every pass consumes at least one whole frame (>= 32 bytes) of a file of `file_len` bytes.
    let frames_max = file_len / FRAME_HEADER_BYTES as u64 + 1;
    for _ in 0..frames_max {
        let mut header_bytes = [0u8; FRAME_HEADER_BYTES];
        let got = read_up_to(&mut reader, &mut header_bytes)?;
        if got == 0 {
            break;
        }
        if got < FRAME_HEADER_BYTES {
            scan.bad = Some((scan.valid_end, format!("short frame header ({got} bytes)")));
            break;
        }
        let header = match decode_frame_header(&header_bytes) {
            Ok(header) => header,
            Err(err) => {
                scan.bad = Some((scan.valid_end, err.to_string()));
                break;
            }
        };
        if header.lsn != scan.next_lsn {
            scan.bad = Some((scan.valid_end, format!("frame lsn {} where {} was expected", header.lsn, scan.next_lsn)));
            break;
        }
        let body_len = header.frame_len() - FRAME_HEADER_BYTES;
        body.resize(body_len, 0);
        let got = read_up_to(&mut reader, &mut body)?;
        if got < body_len {
            scan.bad = Some((scan.valid_end, format!("short frame body ({got} of {body_len} bytes)")));
            break;
        }
        if let Err(err) = verify_frame_body(&header_bytes, &header, &body) {
            scan.bad = Some((scan.valid_end, err.to_string()));
            break;
        }
        if header.lsn >= collect_from
            && let Some(out) = out.as_deref_mut()
        {
            let payload = &body[..header.payload_len as usize];
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
            aligned.extend_from_slice(payload);
            out.push(Record { lsn: header.lsn, kind: header.kind, schema: header.schema, payload: aligned });
        }
        scan.next_lsn += 1;
        scan.valid_end += header.frame_len() as u64;
        if header.batch_end || version == SEGMENT_VERSION_UNMARKED {
            (scan.batches_end, scan.batches_next_lsn) = (scan.valid_end, scan.next_lsn);
        }
    }
    debug_assert!(scan.valid_end <= file_len);
    Ok(SegmentScan::Frames(scan))
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

pub(crate) fn corrupt(segment: &Path, offset: u64, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt { segment: segment.to_path_buf(), offset, reason: reason.into() }
}

/// fsync of a directory, making created, renamed and removed names in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts an empty journal in `dir` whose first record will be `first_lsn`: one segment holding only
/// its header, synced with the directory. For a journal that continues one kept elsewhere (a restored
/// backup); `dir` must hold no segment yet.
pub(crate) fn start_empty_at(dir: &Path, first_lsn: Lsn) -> Result<(), JournalError> {
    std::fs::create_dir_all(dir)?;
    if !list_segments(dir)?.is_empty() {
        return Err(JournalError::InvalidConfig(format!("{} already holds a journal", dir.display())));
    }
    let segment = SegmentFile::new(dir, first_lsn);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&segment.path)?;
    io::Write::write_all(&mut file, &super::format::encode_segment_header(first_lsn))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::{encode_frame, encode_segment_header};

    #[test]
    fn listing_ignores_foreign_files_and_sorts() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["00000000000000000003.seg", "00000000000000000001.seg", "1.seg", "notes.txt", "00000000000000000002.seg.tmp"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let lsns: Vec<Lsn> = list_segments(dir.path()).expect("list").iter().map(|s| s.first_lsn).collect();
        assert_eq!(lsns, vec![1, 3]);
        assert!(list_segments(&dir.path().join("missing")).expect("list").is_empty());
    }

    #[test]
    fn scan_reports_the_first_bad_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = SegmentFile::new(dir.path(), 10);
        let mut bytes = encode_segment_header(10).to_vec();
        encode_frame(&mut bytes, 10, 1, 1, b"first");
        let good_end = bytes.len() as u64;
        encode_frame(&mut bytes, 12, 1, 1, b"skips an lsn");
        std::fs::write(&segment.path, &bytes).expect("write");
        let mut records = Vec::new();
        match scan_segment(&segment, 1, Some(&mut records)).expect("scan") {
            SegmentScan::Frames(scan) => {
                assert_eq!(scan.next_lsn, 11);
                assert_eq!(scan.valid_end, good_end);
                assert_eq!(scan.file_len, bytes.len() as u64);
                let (offset, reason) = scan.bad.expect("bad frame");
                assert_eq!(offset, good_end);
                assert!(reason.contains("lsn 12"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].payload.as_slice(), b"first");

        // A header that names another LSN than the file is corruption, not a torn creation.
        std::fs::write(&segment.path, encode_segment_header(11)).expect("write");
        assert!(matches!(scan_segment(&segment, 1, None), Err(JournalError::Corrupt { offset: 0, .. })));
    }
}
