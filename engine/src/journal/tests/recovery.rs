//! Crash recovery of the journal on real files: torn tails, flipped bytes, corrupt old segments.

use std::path::{Path, PathBuf};

use crate::journal::format::frame_len;
use crate::journal::{DurableWatch, IoMode, JournalConfig, JournalError, JournalReader, JournalWriter, Lsn, read_all};

const FRAMES: Lsn = 6;
const LAST_PAYLOAD_BYTES: usize = 37;

fn config(dir: &Path, segment_bytes_max: u64) -> JournalConfig {
    JournalConfig { dir: dir.to_path_buf(), segment_bytes_max, io: IoMode::Portable }
}

fn payload(lsn: Lsn) -> Vec<u8> {
    let len = if lsn == FRAMES { LAST_PAYLOAD_BYTES } else { 10 + lsn as usize };
    (0..len).map(|i| (lsn as usize + i * 13) as u8).collect()
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    names.sort();
    names.pop().expect("a segment")
}

/// Writes FRAMES records (one batch each), so that the last segment ends with the 37-byte-payload frame.
fn write_journal(dir: &Path, segment_bytes_max: u64) {
    let mut writer = JournalWriter::open(config(dir, segment_bytes_max)).expect("open");
    for lsn in 1..=FRAMES {
        writer.append(5, 1, &payload(lsn));
        writer.sync_all().expect("sync");
    }
}

/// Reopens a damaged journal and checks that exactly frames 1..FRAMES-1 survive, the file is cut right
/// after them, and appending goes on with LSN FRAMES.
fn assert_recovers_without_last_frame(dir: &Path, segment_bytes_max: u64, last_start: u64, what: &str) {
    let segment = last_segment(dir);
    let mut writer = JournalWriter::open(config(dir, segment_bytes_max)).unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
    assert_eq!(writer.next_lsn(), FRAMES, "{what}");
    assert_eq!(writer.durable_lsn(), FRAMES - 1, "{what}");
    assert_eq!(std::fs::metadata(&segment).expect("metadata").len(), last_start, "{what}: file not cut at the last good frame");
    let records = read_all(dir, 1).expect("read_all");
    assert_eq!(records.len() as Lsn, FRAMES - 1, "{what}");
    for record in &records {
        assert_eq!(record.payload.as_slice(), &payload(record.lsn)[..], "{what}");
    }
    assert_eq!(writer.append(6, 1, b"replacement"), FRAMES, "{what}");
    assert_eq!(writer.sync_all().expect("sync"), FRAMES, "{what}");
    let records = read_all(dir, 1).expect("read_all");
    assert_eq!(records.len() as Lsn, FRAMES, "{what}");
    assert_eq!(records[FRAMES as usize - 1].payload.as_slice(), b"replacement");
    assert_eq!(records[FRAMES as usize - 1].kind, 6);
}

/// Every truncation point inside the last frame and every flipped byte of it, for a journal with one
/// segment and for one whose last segment follows others.
#[test]
fn torn_tail_is_cut_at_every_offset_and_every_flipped_byte() {
    for segment_bytes_max in [1 << 20, 160] {
        let pristine = tempfile::tempdir().expect("tempdir");
        write_journal(pristine.path(), segment_bytes_max);
        let segment_name = last_segment(pristine.path()).file_name().expect("name").to_owned();
        let bytes = std::fs::read(last_segment(pristine.path())).expect("read");
        let last_len = frame_len(LAST_PAYLOAD_BYTES) as u64;
        let file_len = bytes.len() as u64;
        let last_start = file_len - last_len;
        assert!(last_start >= 32);

        let work = tempfile::tempdir().expect("tempdir");
        let reset = |contents: &[u8]| {
            for entry in std::fs::read_dir(work.path()).expect("read dir") {
                std::fs::remove_file(entry.expect("entry").path()).expect("remove");
            }
            for entry in std::fs::read_dir(pristine.path()).expect("read dir") {
                let entry = entry.expect("entry");
                std::fs::copy(entry.path(), work.path().join(entry.file_name())).expect("copy");
            }
            std::fs::write(work.path().join(&segment_name), contents).expect("write");
        };

        for cut in last_start..file_len {
            reset(&bytes[..cut as usize]);
            let what = format!("segment max {segment_bytes_max}, truncated to {cut}");
            assert_recovers_without_last_frame(work.path(), segment_bytes_max, last_start, &what);
        }
        for position in last_start..file_len {
            let mut damaged = bytes.clone();
            damaged[position as usize] ^= 0x04;
            reset(&damaged);
            let what = format!("segment max {segment_bytes_max}, byte {position} flipped");
            assert_recovers_without_last_frame(work.path(), segment_bytes_max, last_start, &what);
        }
        // Garbage after a clean end is a torn tail too.
        let mut extended = bytes.clone();
        extended.extend_from_slice(&[0xAB; 50]);
        reset(&extended);
        let writer = JournalWriter::open(config(work.path(), segment_bytes_max)).expect("open");
        assert_eq!(writer.next_lsn(), FRAMES + 1);
        assert_eq!(std::fs::metadata(work.path().join(&segment_name)).expect("metadata").len(), file_len);
    }
}

#[test]
fn read_all_stops_at_a_torn_tail_without_touching_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_journal(dir.path(), 1 << 20);
    let segment = last_segment(dir.path());
    let len = std::fs::metadata(&segment).expect("metadata").len();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(len - 5).expect("truncate");
    let records = read_all(dir.path(), 1).expect("read_all");
    assert_eq!(records.len() as Lsn, FRAMES - 1);
    assert_eq!(std::fs::metadata(&segment).expect("metadata").len(), len - 5);
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).expect("read dir").map(|entry| entry.expect("entry").path()).collect();
    paths.sort();
    paths
}

#[test]
fn bad_frame_in_an_older_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_journal(dir.path(), 160);
    let paths = segments(dir.path());
    assert!(paths.len() >= 3, "{paths:?}");
    let victim = &paths[1];
    let mut bytes = std::fs::read(victim).expect("read");
    let position = bytes.len() - 20;
    bytes[position] ^= 0x01;
    std::fs::write(victim, &bytes).expect("write");

    match JournalWriter::open(config(dir.path(), 160)) {
        Err(JournalError::Corrupt { segment, offset, .. }) => {
            assert_eq!(&segment, victim);
            assert!(offset >= 32 && offset < bytes.len() as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(read_all(dir.path(), 1), Err(JournalError::Corrupt { .. })));
    // A reader treats any bad durable frame as corruption.
    let mut reader = JournalReader::open(dir.path(), 1, DurableWatch::new(FRAMES)).expect("reader");
    let mut outcome = Ok(None);
    for _ in 0..FRAMES {
        outcome = reader.next();
        if outcome.is_err() {
            break;
        }
    }
    assert!(matches!(outcome, Err(JournalError::Corrupt { .. })), "{outcome:?}");
    // The file was not "repaired".
    assert_eq!(std::fs::read(victim).expect("read"), bytes);

    // A truncated older segment is corrupt as well.
    let dir = tempfile::tempdir().expect("tempdir");
    write_journal(dir.path(), 160);
    let paths = segments(dir.path());
    let len = std::fs::metadata(&paths[0]).expect("metadata").len();
    std::fs::OpenOptions::new().write(true).open(&paths[0]).expect("open").set_len(len - 1).expect("truncate");
    assert!(matches!(JournalWriter::open(config(dir.path(), 160)), Err(JournalError::Corrupt { .. })));
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_journal(dir.path(), 160);
    let paths = segments(dir.path());
    assert!(paths.len() >= 3);
    std::fs::remove_file(&paths[1]).expect("remove");
    assert!(matches!(JournalWriter::open(config(dir.path(), 160)), Err(JournalError::Corrupt { .. })));
    assert!(matches!(read_all(dir.path(), 1), Err(JournalError::Corrupt { .. })));
}

#[test]
fn half_created_last_segment_is_removed() {
    for torn_len in [0usize, 7, 32] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_journal(dir.path(), 1 << 20);
        // A crash between creating the next segment and syncing its header.
        let torn = dir.path().join(format!("{:020}.seg", FRAMES + 1));
        std::fs::write(&torn, vec![0u8; torn_len]).expect("write");
        assert_eq!(read_all(dir.path(), 1).expect("read_all").len() as Lsn, FRAMES);

        let mut writer = JournalWriter::open(config(dir.path(), 1 << 20)).expect("open");
        assert!(!torn.exists(), "torn segment of {torn_len} bytes left behind");
        assert_eq!(writer.next_lsn(), FRAMES + 1);
        writer.append(1, 1, b"more");
        assert_eq!(writer.sync_all().expect("sync"), FRAMES + 1);
        assert_eq!(read_all(dir.path(), 1).expect("read_all").len() as Lsn, FRAMES + 1);
    }

    // A bad header in front of data is corruption, not a torn creation.
    let dir = tempfile::tempdir().expect("tempdir");
    write_journal(dir.path(), 1 << 20);
    let segment = last_segment(dir.path());
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[0] = b'X';
    std::fs::write(&segment, &bytes).expect("write");
    assert!(matches!(JournalWriter::open(config(dir.path(), 1 << 20)), Err(JournalError::Corrupt { offset: 0, .. })));
}

/// A batch whose write ended part-way (the process killed in its `write`): every frame that made it to
/// the file is valid, but the batch's last one is missing. Recovery keeps the whole batches before it
/// and cuts the rest, at every frame boundary of the torn batch.
#[test]
fn a_batch_held_only_in_part_is_cut_whole() {
    for survivors in 1..4u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = JournalWriter::open(config(dir.path(), 1 << 20)).expect("open");
        writer.append(5, 1, b"first batch");
        writer.sync_all().expect("sync");
        let whole_end = std::fs::metadata(last_segment(dir.path())).expect("metadata").len();
        // A batch of four frames, of which only the first `survivors` reach the file.
        for i in 0..4u8 {
            writer.append(5, 1, &[i; 20]);
        }
        writer.sync_all().expect("sync");
        drop(writer);
        let segment = last_segment(dir.path());
        let cut = whole_end + survivors * frame_len(20) as u64;
        std::fs::OpenOptions::new().write(true).open(&segment).expect("open").set_len(cut).expect("truncate");

        let mut writer = JournalWriter::open(config(dir.path(), 1 << 20)).expect("reopen");
        assert_eq!(writer.next_lsn(), 2, "{survivors} of 4 frames: only the first batch is whole");
        assert_eq!(std::fs::metadata(&segment).expect("metadata").len(), whole_end, "the partial batch is cut from the file");
        assert_eq!(read_all(dir.path(), 1).expect("read_all").len(), 1);
        assert_eq!(writer.append(6, 1, b"after"), 2);
        writer.sync_all().expect("sync");
        let records = read_all(dir.path(), 1).expect("read_all");
        assert_eq!(records.iter().map(|r| (r.lsn, r.kind)).collect::<Vec<_>>(), [(1, 5), (2, 6)]);
    }
}

/// A segment of the format before batch marks (version 1, no frame marked) is read as it is, and the
/// next batch goes into a new, marked segment rather than being appended to it.
#[test]
fn an_unmarked_segment_is_read_whole_and_not_appended_to() {
    use crate::journal::format::{SEGMENT_VERSION_UNMARKED, encode_frame, encode_segment_header, segment_file_name};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = encode_segment_header(1).to_vec();
    bytes[8..12].copy_from_slice(&SEGMENT_VERSION_UNMARKED.to_le_bytes());
    for lsn in 1..=3 {
        encode_frame(&mut bytes, lsn, 5, 1, &payload(lsn));
    }
    std::fs::write(dir.path().join(segment_file_name(1)), &bytes).expect("write");
    let mut writer = JournalWriter::open(config(dir.path(), 1 << 20)).expect("open");
    assert_eq!(writer.next_lsn(), 4, "every frame of an unmarked segment counts");
    assert_eq!(writer.append(6, 1, b"new"), 4);
    writer.sync_all().expect("sync");
    assert_eq!(segments(dir.path()).len(), 2, "the new batch starts a marked segment");
    let records = read_all(dir.path(), 1).expect("read_all");
    assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [1, 2, 3, 4]);
}
