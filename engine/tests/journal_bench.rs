//! Quick throughput figures of the journal, to be run by hand (not a timed test: it asserts correctness
//! only and prints the rates):
//! `KASSA_JOURNAL_BENCH_SCALE=10 cargo test -p kassa-engine --release --test journal_bench -- --nocapture`

use std::time::Instant;

use kassa_engine::journal::{IoMode, JournalConfig, JournalWriter, read_all};

const PAYLOAD_BYTES: usize = 100;

#[test]
fn group_commit_throughput() {
    let scale: u64 = std::env::var("KASSA_JOURNAL_BENCH_SCALE").ok().and_then(|value| value.parse().ok()).unwrap_or(1).clamp(1, 1000);
    let payload = [0x5Au8; PAYLOAD_BYTES];
    let modes =
        if kassa_engine::journal::io::probe_uring().is_ok() { vec![IoMode::Portable, IoMode::Uring] } else { vec![IoMode::Portable] };
    for io in modes {
        for (batch_frames, batches) in [(1u64, 100u64), (64, 50), (1024, 10)] {
            let batches = batches * scale;
            let dir = tempfile::tempdir().expect("tempdir");
            let mut writer =
                JournalWriter::open(JournalConfig { dir: dir.path().to_path_buf(), segment_bytes_max: 64 << 20, io }).expect("open");
            let started = Instant::now();
            for _ in 0..batches {
                for _ in 0..batch_frames {
                    writer.append(1, 1, &payload);
                }
                writer.sync_all().expect("sync");
            }
            let elapsed_s = started.elapsed().as_secs_f64();
            let frames = batch_frames * batches;
            assert_eq!(writer.durable_lsn(), frames);
            eprintln!(
                "{:>8} batch {:>4} x {:>5}: {:>10.0} frames/s {:>8.0} syncs/s ({:.1} us/sync)",
                writer.io_backend_name(),
                batch_frames,
                batches,
                frames as f64 / elapsed_s,
                batches as f64 / elapsed_s,
                elapsed_s * 1e6 / batches as f64,
            );
            drop(writer);
            assert_eq!(read_all(dir.path(), 1).expect("read_all").len() as u64, frames);
        }
    }
}
