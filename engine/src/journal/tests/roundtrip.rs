//! Real-file round trips of the journal: group commit protocol, rotation, retention, both I/O backends.

use std::path::Path;
use std::time::Duration;

use crate::journal::format::{SEGMENT_HEADER_BYTES, decode_segment_header, frame_len};
use crate::journal::{IoMode, JournalConfig, JournalError, JournalReader, JournalWriter, Lsn, read_all};
use proptest::prelude::*;

const RECV_TIMEOUT: Duration = Duration::from_secs(30);

fn payload(lsn: Lsn) -> Vec<u8> {
    let len = (lsn as usize * 7) % 97;
    (0..len).map(|i| (lsn as usize * 31 + i) as u8).collect()
}

fn config(dir: &Path, io: IoMode, segment_bytes_max: u64) -> JournalConfig {
    JournalConfig { dir: dir.to_path_buf(), segment_bytes_max, io }
}

fn wait_complete(writer: &mut JournalWriter) -> Lsn {
    let msg = writer.completions().recv_timeout(RECV_TIMEOUT).expect("completion within the timeout");
    writer.complete(msg).expect("batch durable")
}

fn segment_files(dir: &Path) -> Vec<(Lsn, u64)> {
    let mut files: Vec<(Lsn, u64)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let lsn = name.trim_end_matches(".seg").parse().expect("numeric name");
            (lsn, entry.metadata().expect("metadata").len())
        })
        .collect();
    files.sort();
    files
}

/// The group-commit protocol step by step, then read back three ways (read_all, reader, reopen).
fn protocol_round_trip(dir: &Path, io: IoMode) -> &'static str {
    let mut writer = JournalWriter::open(config(dir, io, 1 << 20)).expect("open");
    let backend = writer.io_backend_name();
    assert_eq!((writer.next_lsn(), writer.durable_lsn()), (1, 0));
    assert_eq!(writer.flush(), None, "nothing pending, nothing to flush");

    for lsn in 1..=10 {
        assert_eq!(writer.append(3, 1, &payload(lsn)), lsn);
    }
    assert_eq!(writer.durable_lsn(), 0, "append does no I/O");
    assert_eq!(writer.flush(), Some(10));
    // While the batch is in flight, new frames wait for the next batch.
    assert_eq!(writer.append(3, 1, &payload(11)), 11);
    assert_eq!(writer.flush(), None);
    assert_eq!(wait_complete(&mut writer), 10);
    assert_eq!(writer.durable_lsn(), 10);
    assert_eq!(writer.flush(), Some(11));
    assert_eq!(wait_complete(&mut writer), 11);
    assert!(matches!(writer.complete(Ok(11)), Err(JournalError::UnexpectedCompletion)));
    for lsn in 12..=20 {
        writer.append(3, 1, &payload(lsn));
    }
    assert_eq!(writer.sync_all().expect("sync_all"), 20);
    assert_eq!(writer.durable_watch().get(), 20);

    let records = read_all(dir, 1).expect("read_all");
    assert_eq!(records.len(), 20);
    for (index, record) in records.iter().enumerate() {
        let lsn = index as Lsn + 1;
        assert_eq!((record.lsn, record.kind, record.schema), (lsn, 3, 1));
        assert_eq!(record.payload.as_slice(), &payload(lsn)[..]);
        assert_eq!(record.payload.as_ptr() as usize % 16, 0, "payload aligned");
    }
    assert_eq!(read_all(dir, 15).expect("read_all from 15")[..], records[14..]);

    let mut reader = JournalReader::open(dir, 5, writer.durable_watch()).expect("reader");
    for expected in &records[4..] {
        assert_eq!(reader.next().expect("next").as_ref(), Some(expected));
    }
    assert_eq!(reader.next().expect("caught up"), None);
    drop(writer);

    let mut writer = JournalWriter::open(config(dir, io, 1 << 20)).expect("reopen");
    assert_eq!((writer.next_lsn(), writer.durable_lsn()), (21, 20));
    writer.append(9, 2, b"after reopen");
    assert_eq!(writer.sync_all().expect("sync"), 21);
    let records = read_all(dir, 21).expect("read_all");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload.as_slice(), b"after reopen");
    backend
}

#[test]
fn portable_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(protocol_round_trip(dir.path(), IoMode::Portable), "portable");
}

#[test]
fn inline_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(protocol_round_trip(dir.path(), IoMode::Inline), "inline");
}

/// Asks the kernel directly (not through tokio-uring) whether io_uring can be set up here.
fn kernel_allows_io_uring() -> bool {
    // struct io_uring_params is 120 bytes; zeroed = default setup.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup only writes into `params`, which is large enough; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this function owns.
        unsafe { libc::close(fd as libc::c_int) };
        true
    } else {
        false
    }
}

#[test]
fn uring_round_trip_or_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = kernel_allows_io_uring();
    assert_eq!(crate::journal::io::probe_uring().is_ok(), allowed, "tokio-uring probe disagrees with the kernel");
    if allowed {
        eprintln!("io_uring available: exercising the io_uring backend");
        assert_eq!(protocol_round_trip(dir.path(), IoMode::Uring), "io_uring");
        let auto_dir = tempfile::tempdir().expect("tempdir");
        let auto = JournalWriter::open(config(auto_dir.path(), IoMode::Auto, 1 << 20)).expect("auto open");
        assert_eq!(auto.io_backend_name(), "io_uring");
    } else {
        eprintln!("io_uring unavailable: checking the error and the fallback");
        let err = JournalWriter::open(config(dir.path(), IoMode::Uring, 1 << 20)).expect_err("uring must fail here");
        assert!(matches!(err, JournalError::UringUnavailable(_)), "got {err:?}");
        let auto = JournalWriter::open(config(dir.path(), IoMode::Auto, 1 << 20)).expect("auto open");
        assert_eq!(auto.io_backend_name(), "portable");
    }
}

#[test]
fn backends_share_one_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = if kernel_allows_io_uring() { IoMode::Uring } else { IoMode::Auto };
    let mut writer = JournalWriter::open(config(dir.path(), first, 300)).expect("open");
    for lsn in 1..=12 {
        writer.append(1, 1, &payload(lsn));
        if lsn % 3 == 0 {
            writer.sync_all().expect("sync");
        }
    }
    drop(writer);
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, 300)).expect("open");
    assert_eq!(writer.next_lsn(), 13);
    for lsn in 13..=20 {
        writer.append(1, 1, &payload(lsn));
        writer.sync_all().expect("sync");
    }
    let lsns: Vec<Lsn> = read_all(dir.path(), 1).expect("read_all").iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (1..=20).collect::<Vec<_>>());
}

#[test]
fn lsns_continue_across_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment_bytes_max = 512;
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, segment_bytes_max)).expect("open");
    let mut batch_bytes_max = 0;
    let mut lsn = 0;
    for batch in 0..40u64 {
        let mut batch_bytes = 0;
        for _ in 0..(batch % 4 + 1) {
            lsn += 1;
            assert_eq!(writer.append(2, 1, &payload(lsn)), lsn);
            batch_bytes += frame_len(payload(lsn).len()) as u64;
        }
        batch_bytes_max = batch_bytes_max.max(batch_bytes);
        assert_eq!(writer.sync_all().expect("sync"), lsn);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 5, "expected rotation, got {files:?}");
    assert_eq!(files.len(), writer.segment_count());
    for (first_lsn, len) in &files {
        // A segment only outgrows the limit by a batch that alone does not fit an empty one.
        assert!(*len <= segment_bytes_max.max(SEGMENT_HEADER_BYTES as u64 + batch_bytes_max));
        let bytes = std::fs::read(dir.path().join(format!("{first_lsn:020}.seg"))).expect("read");
        let header: [u8; 32] = bytes[..32].try_into().expect("header");
        assert_eq!(decode_segment_header(&header), Ok(*first_lsn));
    }
    let records = read_all(dir.path(), 1).expect("read_all");
    assert_eq!(records.len() as Lsn, lsn);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.lsn, index as Lsn + 1);
        assert_eq!(record.payload.as_slice(), &payload(record.lsn)[..]);
    }
    // Starting in the middle of a later segment.
    let from = files[3].0 + 1;
    assert_eq!(read_all(dir.path(), from).expect("read_all")[0].lsn, from);
    let mut reader = JournalReader::open(dir.path(), from, writer.durable_watch()).expect("reader");
    let mut seen = Vec::new();
    while let Some(record) = reader.next().expect("next") {
        seen.push(record.lsn);
    }
    assert_eq!(seen, (from..=lsn).collect::<Vec<_>>());
    drop(writer);

    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, segment_bytes_max)).expect("reopen");
    assert_eq!(writer.next_lsn(), lsn + 1);
    assert_eq!(writer.segment_count(), files.len());
    writer.append(2, 1, b"next");
    assert_eq!(writer.sync_all().expect("sync"), lsn + 1);
    assert_eq!(read_all(dir.path(), 1).expect("read_all").len() as Lsn, lsn + 1);
}

#[test]
fn remove_below_deletes_only_covered_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, 256)).expect("open");
    for lsn in 1..=30 {
        writer.append(1, 1, &payload(lsn));
        writer.sync_all().expect("sync");
    }
    let before = segment_files(dir.path());
    assert!(before.len() >= 4, "{before:?}");
    // A reader created before the removal, not yet positioned in any segment.
    let mut early_reader = JournalReader::open(dir.path(), 1, writer.durable_watch()).expect("reader");

    // An LSN inside segment 2: segments 0 and 1 are fully below it, segment 2 is not.
    let cut = before[2].0 + 1;
    assert_eq!(writer.remove_below(cut).expect("remove"), 2);
    let after = segment_files(dir.path());
    assert_eq!(after[..], before[2..]);
    // Exactly at a segment start: that segment's predecessor is covered, the segment itself is not.
    assert_eq!(writer.remove_below(before[3].0).expect("remove"), 1);
    assert_eq!(segment_files(dir.path())[..], before[3..]);
    assert_eq!(writer.remove_below(before[3].0).expect("remove again"), 0);

    let oldest = before[3].0;
    match read_all(dir.path(), 1) {
        Err(JournalError::LsnRemoved { requested, oldest: reported }) => {
            assert_eq!((requested, reported), (1, oldest));
        }
        other => panic!("expected LsnRemoved, got {other:?}"),
    }
    assert!(matches!(JournalReader::open(dir.path(), oldest - 1, writer.durable_watch()), Err(JournalError::LsnRemoved { .. })));
    assert!(matches!(early_reader.next(), Err(JournalError::LsnRemoved { requested: 1, .. })));
    let mut reader = JournalReader::open(dir.path(), oldest, writer.durable_watch()).expect("reader");
    assert_eq!(reader.next().expect("next").map(|r| r.lsn), Some(oldest));

    // Never the active segment, whatever the LSN.
    writer.remove_below(Lsn::MAX).expect("remove all");
    let left = segment_files(dir.path());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0], *before.last().expect("segments"));
    writer.append(1, 1, b"still appending");
    assert_eq!(writer.sync_all().expect("sync"), 31);
    drop(writer);
    let writer = JournalWriter::open(config(dir.path(), IoMode::Portable, 256)).expect("reopen");
    assert_eq!(writer.next_lsn(), 32);
}

#[test]
fn oversized_payload_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, 1 << 20)).expect("open");
    let big = vec![0u8; crate::journal::format::PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(writer.try_append(1, 1, &big), Err(JournalError::PayloadTooLarge { .. })));
    assert_eq!(writer.next_lsn(), 1);
    assert!(matches!(JournalWriter::open(config(dir.path(), IoMode::Portable, 10)), Err(JournalError::InvalidConfig(_))));
}

#[derive(Debug, Clone)]
struct Step {
    payloads: Vec<Vec<u8>>,
    flush: bool,
    wait: bool,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..6), any::<bool>(), any::<bool>())
        .prop_map(|(payloads, flush, wait)| Step { payloads, flush, wait })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_batches_read_back_exactly(
        steps in prop::collection::vec(step_strategy(), 1..25),
        segment_bytes_max in 128u64..2048,
        auto_io in any::<bool>(),
    ) {
        // Auto exercises io_uring where the kernel allows it.
        let io = if auto_io { IoMode::Auto } else { IoMode::Portable };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer =
            JournalWriter::open(config(dir.path(), io, segment_bytes_max)).expect("open");
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for step in &steps {
            for bytes in &step.payloads {
                let lsn = writer.append(4, 2, bytes);
                expected.push(bytes.clone());
                prop_assert_eq!(lsn, expected.len() as Lsn);
            }
            if step.flush {
                let in_flight = writer.in_flight_lsn().is_some();
                let had_pending = writer.pending_bytes() > 0;
                let flushed = writer.flush();
                if in_flight || !had_pending {
                    prop_assert_eq!(flushed, None);
                } else {
                    prop_assert_eq!(flushed, Some(expected.len() as Lsn));
                }
            }
            if step.wait && writer.in_flight_lsn().is_some() {
                let durable = wait_complete(&mut writer);
                // Everything written so far is durable now: the file holds exactly that prefix.
                let records = read_all(dir.path(), 1).expect("read_all");
                prop_assert_eq!(records.len() as Lsn, durable);
                for (record, bytes) in records.iter().zip(&expected) {
                    prop_assert_eq!(record.payload.as_slice(), &bytes[..]);
                }
            }
        }
        let durable = writer.sync_all().expect("sync_all");
        prop_assert_eq!(durable, expected.len() as Lsn);
        let records = read_all(dir.path(), 1).expect("read_all");
        prop_assert_eq!(records.len(), expected.len());
        for (index, (record, bytes)) in records.iter().zip(&expected).enumerate() {
            prop_assert_eq!(record.lsn, index as Lsn + 1);
            prop_assert_eq!((record.kind, record.schema), (4, 2));
            prop_assert_eq!(record.payload.as_slice(), &bytes[..]);
        }
        drop(writer);
        let writer =
            JournalWriter::open(config(dir.path(), io, segment_bytes_max)).expect("reopen");
        prop_assert_eq!(writer.next_lsn(), expected.len() as Lsn + 1);
    }
}

#[test]
fn io_error_fails_the_journal_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Auto, 1 << 20)).expect("open");
    writer.append(1, 1, b"one");
    writer.sync_all().expect("sync");
    writer.append(1, 1, b"two");
    assert_eq!(writer.flush(), Some(2));
    // Swap the real completion for an fdatasync failure.
    writer.completions().recv_timeout(RECV_TIMEOUT).expect("completion").expect("real batch succeeded");
    let failure = std::io::Error::other("injected fdatasync failure");
    assert!(matches!(writer.complete(Err(failure)), Err(JournalError::Io(_))));
    assert_eq!(writer.durable_lsn(), 1);
    writer.append(1, 1, b"three");
    assert_eq!(writer.flush(), None, "a failed journal takes no more batches");
    assert!(matches!(writer.sync_all(), Err(JournalError::Failed(_))));
    drop(writer);
    // Reopening re-verifies the files: what reached the disk is kept, nothing more.
    let writer = JournalWriter::open(config(dir.path(), IoMode::Auto, 1 << 20)).expect("reopen");
    assert_eq!(writer.next_lsn(), 3);
    assert_eq!(read_all(dir.path(), 1).expect("read_all").len(), 2);
}

#[test]
fn dropping_the_writer_finishes_the_batch_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Auto, 1 << 20)).expect("open");
    for lsn in 1..=5 {
        writer.append(1, 1, &payload(lsn));
    }
    assert_eq!(writer.flush(), Some(5));
    drop(writer);
    let writer = JournalWriter::open(config(dir.path(), IoMode::Auto, 1 << 20)).expect("reopen");
    assert_eq!(writer.next_lsn(), 6);
    assert_eq!(read_all(dir.path(), 1).expect("read_all").len(), 5);
}
