//! The journal alone: group-commit throughput of 100-byte frames appended in batches of 1, 64 and 1024,
//! each batch made durable by one sync, per I/O backend (portable, and io_uring where the kernel has it).
//! Each iteration is one batch, so criterion's elements/s is frames/s and 1e9 / mean ns is syncs/s.
//!
//! `cargo bench -p kassa-bench --bench journal`. (This was `engine/tests/journal_bench.rs`, a test that
//! printed rates; a benchmark is not part of the test suite.) After each measurement the journal is read
//! back: every frame appended is durable and replays.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kassa_engine::internals::journal::{IoMode, JournalConfig, JournalWriter, read_all};

const PAYLOAD_BYTES: usize = 100;

fn group_commit(c: &mut Criterion) {
    let payload = [0x5Au8; PAYLOAD_BYTES];
    let modes = if kassa_engine::internals::journal::io::probe_uring().is_ok() {
        vec![IoMode::Portable, IoMode::Uring]
    } else {
        vec![IoMode::Portable]
    };
    let mut group = c.benchmark_group("journal_group_commit");
    for io in modes {
        for batch_frames in [1u64, 64, 1024] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut writer =
                JournalWriter::open(JournalConfig { dir: dir.path().to_path_buf(), segment_bytes_max: 64 << 20, io }).expect("open");
            let mut frames = 0u64;
            group.throughput(Throughput::Elements(batch_frames));
            group.bench_function(BenchmarkId::new(writer.io_backend_name(), batch_frames), |b| {
                b.iter(|| {
                    for _ in 0..batch_frames {
                        writer.append(1, 1, &payload);
                    }
                    writer.sync_all().expect("sync");
                    frames += batch_frames;
                })
            });
            assert_eq!(writer.durable_lsn(), frames);
            drop(writer);
            assert_eq!(read_all(dir.path(), 1).expect("read_all").len() as u64, frames);
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = journal;
    config = config();
    targets = group_commit
}
criterion_main!(journal);
