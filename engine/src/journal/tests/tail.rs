//! A reader tailing the journal while the writer appends, syncs and rotates on another thread.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::journal::{IoMode, JournalConfig, JournalReader, JournalWriter, Lsn};

const RECV_TIMEOUT: Duration = Duration::from_secs(30);

fn config(dir: &Path, io: IoMode, segment_bytes_max: u64) -> JournalConfig {
    JournalConfig { dir: dir.to_path_buf(), segment_bytes_max, io }
}

fn payload(lsn: Lsn) -> Vec<u8> {
    let len = 1 + (lsn as usize * 13) % 150;
    (0..len).map(|i| (lsn as usize ^ i) as u8).collect()
}

#[test]
fn reader_sees_nothing_beyond_the_durable_lsn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), IoMode::Portable, 1 << 20)).expect("open");
    let mut reader = JournalReader::open(dir.path(), 1, writer.durable_watch()).expect("reader");
    assert_eq!(reader.next().expect("next"), None);
    for lsn in 1..=3 {
        writer.append(1, 1, &payload(lsn));
    }
    assert_eq!(writer.flush(), Some(3));
    // Wait for the I/O thread to finish the batch but do not record it: the frames are in the file, yet
    // not durable as far as the journal is concerned.
    let msg = writer.completions().recv_timeout(RECV_TIMEOUT).expect("completion");
    assert!(std::fs::metadata(dir.path().join(format!("{:020}.seg", 1))).expect("segment").len() > 32);
    assert_eq!(reader.next().expect("next"), None);
    writer.complete(msg).expect("complete");
    let lsns: Vec<Lsn> = std::iter::from_fn(|| reader.next().expect("next")).map(|record| record.lsn).collect();
    assert_eq!(lsns, vec![1, 2, 3]);
    assert_eq!(reader.position(), 4);
}

fn tail_while_writing(io: IoMode) {
    const RECORDS: Lsn = 3000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = JournalWriter::open(config(dir.path(), io, 8 << 10)).expect("open");
    let watch = writer.durable_watch();
    let mut reader = JournalReader::open(dir.path(), 1, watch.clone()).expect("reader");

    let producer = std::thread::spawn(move || {
        let mut next: Lsn = 1;
        let mut rounds = 0u64;
        // The shard loop in miniature: append what arrived, flush if idle, take completions.
        while writer.durable_lsn() < RECORDS {
            rounds += 1;
            let burst = 1 + rounds % 37;
            for _ in 0..burst {
                if next <= RECORDS {
                    assert_eq!(writer.append(7, 1, &payload(next)), next);
                    next += 1;
                }
            }
            writer.flush();
            if let Ok(msg) = writer.completions().recv_timeout(Duration::from_millis(1)) {
                writer.complete(msg).expect("batch durable");
            }
            assert!(rounds < 1_000_000, "writer loop did not converge");
        }
        writer.segment_count()
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut expected: Lsn = 1;
    while expected <= RECORDS {
        assert!(Instant::now() < deadline, "reader stalled at lsn {expected}");
        match reader.next().expect("next") {
            Some(record) => {
                assert_eq!(record.lsn, expected);
                assert!(record.lsn <= watch.get(), "record {} read before durable", record.lsn);
                assert_eq!(record.payload.as_slice(), &payload(record.lsn)[..]);
                expected += 1;
            }
            None => {
                watch.wait_beyond(expected - 1, Duration::from_millis(100));
            }
        }
    }
    let segments = producer.join().expect("writer thread");
    assert!(segments > 10, "rotation expected, got {segments} segments");
    assert_eq!(reader.next().expect("next"), None);
}

#[test]
fn reader_tails_a_rotating_writer_portable() {
    tail_while_writing(IoMode::Portable);
}

#[test]
fn reader_tails_a_rotating_writer_auto() {
    tail_while_writing(IoMode::Auto);
}
