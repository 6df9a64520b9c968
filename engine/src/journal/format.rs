//! On-disk layout of journal segments and record frames (all integers little-endian).
//!
//! Segment file `<first_lsn:020>.seg`:
//! `magic b"KSJSEG01" | version u32 = 1 | pad u32 | first_lsn u64 | reserved u64`, then frames.
//!
//! Frame: a 32-byte header
//! `magic u32 | kind u16 | schema u16 | payload_len u32 | crc32c u32 | lsn u64 | flags u8 | reserved [u8; 7]`,
//! the payload at offset 32, zero padding up to a multiple of 16 bytes. The CRC32C covers the header
//! (with the crc field zeroed) followed by the payload.
//!
//! Version 2 segments mark the last frame of every batch ([`FLAG_BATCH_END`]): one `write` of a batch
//! can end part-way when the process is killed, and recovery then cuts the frames after the last whole
//! batch, so a command's events (a product's reservation and the product it holds) never survive in
//! part. Version 1 segments have no marks; they are read as they are and never appended to.

use super::Lsn;

/// Magic of every frame header: "KSRC" read as a little-endian u32.
pub const FRAME_MAGIC: u32 = 0x4B53_5243;
/// Size of a frame header; the payload starts right after it.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Frames are padded to this size so that every payload starts 16-byte aligned in the file.
pub const FRAME_ALIGN_BYTES: usize = 16;
/// Upper bound of one payload; also protects readers from allocating for garbage lengths.
pub const PAYLOAD_BYTES_MAX: usize = 16 << 20;

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KSJSEG01";
/// Segment format version written: 2, batches marked. Version 1 (no marks) is still read.
pub const SEGMENT_VERSION: u32 = 2;
/// The version before batch marks.
pub const SEGMENT_VERSION_UNMARKED: u32 = 1;
/// Frame flag: the last frame of a batch.
pub const FLAG_BATCH_END: u8 = 1;
const FLAGS_AT: usize = 24;
/// Size of the segment header; the first frame starts right after it.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";

const CRC_RANGE: std::ops::Range<usize> = 12..16;

/// A decoded, not yet CRC-checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u16,
    pub schema: u16,
    pub payload_len: u32,
    pub crc: u32,
    pub lsn: Lsn,
    /// The last frame of its batch (always false in version 1 segments).
    pub batch_end: bool,
}

impl FrameHeader {
    /// Total bytes of the frame on disk (header, payload and padding).
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload_len as usize)
    }
}

/// Why a byte range is not a valid frame.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("short frame: {available} of {needed} bytes present")]
    Short { needed: usize, available: usize },
    #[error("bad frame magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("payload length {len} exceeds the maximum {PAYLOAD_BYTES_MAX}")]
    PayloadTooLarge { len: u32 },
    #[error("reserved header field or unknown flag is not zero")]
    ReservedNonZero,
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("frame padding is not zero")]
    PaddingNonZero,
}

/// Bytes a frame with `payload_len` payload bytes occupies on disk.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + payload_len.next_multiple_of(FRAME_ALIGN_BYTES)
}

/// Appends one complete frame (header, payload, padding) to `out`.
///
/// The caller guarantees `payload.len() <= PAYLOAD_BYTES_MAX`.
pub fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, kind: u16, schema: u16, payload: &[u8]) {
    assert!(payload.len() <= PAYLOAD_BYTES_MAX, "payload too large");
    let start = out.len();
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    header[4..6].copy_from_slice(&kind.to_le_bytes());
    header[6..8].copy_from_slice(&schema.to_le_bytes());
    header[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[16..24].copy_from_slice(&lsn.to_le_bytes());
    let crc = frame_crc(&header, payload);
    header[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    let padded_len = frame_len(payload.len());
    out.resize(start + padded_len, 0);
    debug_assert_eq!((out.len() - start) % FRAME_ALIGN_BYTES, 0);
}

/// Marks the frame at the start of `frame` (whole, as [`encode_frame`] wrote it) as the last of its
/// batch, and recomputes its CRC.
pub fn mark_batch_end(frame: &mut [u8]) {
    let header: &mut [u8; FRAME_HEADER_BYTES] = frame.first_chunk_mut().expect("a whole frame");
    header[FLAGS_AT] |= FLAG_BATCH_END;
    let payload_len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
    let header_copy = *header;
    let crc = frame_crc(&header_copy, &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len]);
    frame[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
}

/// CRC32C of a header (its crc field treated as zero) followed by the payload.
pub fn frame_crc(header: &[u8; FRAME_HEADER_BYTES], payload: &[u8]) -> u32 {
    let mut zeroed = *header;
    zeroed[CRC_RANGE].fill(0);
    crc32c::crc32c_append(crc32c::crc32c(&zeroed), payload)
}

/// Decodes and sanity-checks a header (magic, length bound, reserved); the CRC is checked later.
pub fn decode_frame_header(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let payload_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if payload_len as usize > PAYLOAD_BYTES_MAX {
        return Err(FrameError::PayloadTooLarge { len: payload_len });
    }
    if bytes[FLAGS_AT] & !FLAG_BATCH_END != 0 || bytes[FLAGS_AT + 1..32].iter().any(|&b| b != 0) {
        return Err(FrameError::ReservedNonZero);
    }
    Ok(FrameHeader {
        kind: u16::from_le_bytes(bytes[4..6].try_into().expect("2 bytes")),
        schema: u16::from_le_bytes(bytes[6..8].try_into().expect("2 bytes")),
        payload_len,
        crc: u32::from_le_bytes(bytes[CRC_RANGE].try_into().expect("4 bytes")),
        lsn: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
        batch_end: bytes[FLAGS_AT] & FLAG_BATCH_END != 0,
    })
}

/// Checks the CRC and the zero padding of a frame whose header was decoded from `header_bytes`.
/// `body` is the payload followed by its padding (`frame_len - 32` bytes).
pub fn verify_frame_body(header_bytes: &[u8; FRAME_HEADER_BYTES], header: &FrameHeader, body: &[u8]) -> Result<(), FrameError> {
    let payload_len = header.payload_len as usize;
    debug_assert_eq!(body.len(), header.frame_len() - FRAME_HEADER_BYTES);
    let (payload, padding) = body.split_at(payload_len);
    let computed = frame_crc(header_bytes, payload);
    if computed != header.crc {
        return Err(FrameError::BadCrc { stored: header.crc, computed });
    }
    if padding.iter().any(|&b| b != 0) {
        return Err(FrameError::PaddingNonZero);
    }
    Ok(())
}

/// Decodes one complete frame from the start of `bytes` (arbitrary input is fine: never panics).
/// Returns the header, the payload and the frame's total length.
pub fn decode_frame(bytes: &[u8]) -> Result<(FrameHeader, &[u8], usize), FrameError> {
    let Some(header_bytes) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::Short { needed: FRAME_HEADER_BYTES, available: bytes.len() });
    };
    let header = decode_frame_header(header_bytes)?;
    let total = header.frame_len();
    if bytes.len() < total {
        return Err(FrameError::Short { needed: total, available: bytes.len() });
    }
    let body = &bytes[FRAME_HEADER_BYTES..total];
    verify_frame_body(header_bytes, &header, body)?;
    Ok((header, &body[..header.payload_len as usize], total))
}

/// The 32-byte header of a segment whose first record has `first_lsn`.
pub fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    header
}

/// Decodes a segment header and returns its first LSN.
pub fn decode_segment_header(bytes: &[u8; SEGMENT_HEADER_BYTES]) -> Result<Lsn, String> {
    decode_segment(bytes).map(|(first_lsn, _)| first_lsn)
}

/// Decodes a segment header: its first LSN and its version.
pub fn decode_segment(bytes: &[u8; SEGMENT_HEADER_BYTES]) -> Result<(Lsn, u32), String> {
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".to_owned());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION && version != SEGMENT_VERSION_UNMARKED {
        return Err(format!("unsupported segment version {version}"));
    }
    if bytes[12..16].iter().chain(&bytes[24..32]).any(|&b| b != 0) {
        return Err("segment header padding is not zero".to_owned());
    }
    let first_lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if first_lsn == 0 {
        return Err("segment first_lsn is 0".to_owned());
    }
    Ok((first_lsn, version))
}

/// `<first_lsn:020>.seg`
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// Inverse of [`segment_file_name`]; `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&lsn| lsn > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: Lsn, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, lsn, 7, 2, payload);
        out
    }

    #[test]
    fn frame_round_trip_and_padding() {
        for len in [0usize, 1, 15, 16, 17, 100, 1000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
            let bytes = frame(42, &payload);
            assert_eq!(bytes.len(), frame_len(len));
            assert_eq!(bytes.len() % FRAME_ALIGN_BYTES, 0);
            let (header, decoded, total) = decode_frame(&bytes).expect("valid frame");
            assert_eq!(total, bytes.len());
            assert_eq!(header.lsn, 42);
            assert_eq!((header.kind, header.schema), (7, 2));
            assert_eq!(decoded, &payload[..]);
        }
    }

    #[test]
    fn header_layout_is_little_endian() {
        let bytes = frame(0x0102_0304_0506_0708, b"abc");
        assert_eq!(&bytes[0..4], b"CRSK");
        assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&bytes[32..35], b"abc");
        assert!(bytes[35..48].iter().all(|&b| b == 0));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = frame(9, b"some payload bytes of a record");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(decode_frame(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn every_truncation_is_short() {
        let bytes = frame(9, b"0123456789abcdef0123");
        for cut in 0..bytes.len() {
            assert!(matches!(decode_frame(&bytes[..cut]), Err(FrameError::Short { .. })), "cut at {cut}");
        }
    }

    #[test]
    fn huge_length_is_rejected_before_reading() {
        let mut bytes = frame(1, b"x");
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&bytes), Err(FrameError::PayloadTooLarge { len: u32::MAX }));
    }

    #[test]
    fn segment_header_and_names() {
        let header = encode_segment_header(77);
        assert_eq!(decode_segment_header(&header), Ok(77));
        let mut bad = header;
        bad[0] = b'X';
        assert!(decode_segment_header(&bad).is_err());
        assert_eq!(decode_segment(&header), Ok((77, SEGMENT_VERSION)));
        let mut unmarked = header;
        unmarked[8] = 1;
        assert_eq!(decode_segment(&unmarked), Ok((77, SEGMENT_VERSION_UNMARKED)), "the format before batch marks is read");
        let mut bad = header;
        bad[8] = 3;
        assert!(decode_segment_header(&bad).is_err());
        assert_eq!(segment_file_name(77), "00000000000000000077.seg");
        assert_eq!(parse_segment_file_name("00000000000000000077.seg"), Some(77));
        assert_eq!(parse_segment_file_name("77.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000077.tmp"), None);
        assert_eq!(parse_segment_file_name("0000000000000000007x.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000000.seg"), None);
    }
}
