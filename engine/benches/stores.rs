//! fjall vs redb behind the `Store` trait, to decide which keyspace goes on which store.
//!
//! 100k records of ~200 bytes, with 8-byte big-endian keys and with 24-byte string keys:
//! point gets (random hits), apply of batches of 1 / 64 / 512 puts (no sync; a checkpoint
//! runs outside the timed region every 256 batches, as the engine would), range scans of 100
//! entries, prefix scans (string keys, 10 matches each) and point gets from 2 threads while a
//! writer applies batches of 64, and the cost of a checkpoint after 256 batches of 64.
//!
//! Run: `cargo bench -p kassa-engine --bench stores` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kassa_engine::internals::store::{Keyspace, Lsn, Store, WriteBatch, open_fjall, open_redb};

const RECORDS: u64 = 100_000;
const VALUE_BYTES: usize = 200;
const CACHE_BYTES: u64 = 64 << 20;
const KS: Keyspace = Keyspace::Products;
/// Checkpoint cadence of the apply benchmarks, in batches (a power of two: tested by mask).
const PERSIST_EVERY: u64 = 256;

#[derive(Clone, Copy)]
enum Keys {
    U64,
    Str,
}

impl Keys {
    fn label(self) -> &'static str {
        match self {
            Keys::U64 => "u64",
            Keys::Str => "str24",
        }
    }

    fn key(self, i: u64) -> Vec<u8> {
        match self {
            Keys::U64 => i.to_be_bytes().to_vec(),
            // 24 bytes; ten records share each "user:NNNNNN:" prefix, like per-user indexes.
            Keys::Str => format!("user:{:06}:basket:{:05}", i / 10, i % 10).into_bytes(),
        }
    }
}

/// Deterministic, cheap pseudo-random sequence (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

struct Fixture {
    name: &'static str,
    keys: Keys,
    store: Arc<dyn Store>,
    lsn: Lsn,
    _dir: tempfile::TempDir,
}

fn fixture(name: &'static str, keys: Keys) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match name {
        "fjall" => open_fjall(&dir.path().join("fjall"), CACHE_BYTES),
        _ => open_redb(&dir.path().join("store.redb"), CACHE_BYTES),
    }
    .expect("open store");
    let mut lsn = 0;
    for chunk in 0..RECORDS / 1000 {
        let mut b = WriteBatch::with_capacity(1000);
        for i in chunk * 1000..(chunk + 1) * 1000 {
            b.put(KS, &keys.key(i), &value(i));
        }
        lsn += 1;
        store.apply(&b, lsn).expect("load");
    }
    store.persist().expect("persist");
    Fixture { name, keys, store, lsn, _dir: dir }
}

fn bench_store(c: &mut Criterion, f: &mut Fixture) {
    let mut g = c.benchmark_group(format!("{}/{}", f.name, f.keys.label()));
    let store = Arc::clone(&f.store);
    let keys = f.keys;
    let all_keys: Arc<Vec<Vec<u8>>> = Arc::new((0..RECORDS).map(|i| keys.key(i)).collect());

    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            let k = &all_keys[rng.below(RECORDS) as usize];
            black_box(store.get(KS, k).expect("get").expect("hit"))
        })
    });

    g.bench_function("range_100", |b| {
        b.iter(|| {
            let k = &all_keys[rng.below(RECORDS - 100) as usize];
            let r = store.range(KS, Bound::Included(k), Bound::Unbounded, false, 100).expect("range");
            assert_eq!(r.len(), 100);
            black_box(r)
        })
    });

    g.bench_function("range_100_rev", |b| {
        b.iter(|| {
            let k = &all_keys[100 + rng.below(RECORDS - 100) as usize];
            let r = store.range(KS, Bound::Unbounded, Bound::Included(k), true, 100).expect("range");
            assert_eq!(r.len(), 100);
            black_box(r)
        })
    });

    if let Keys::Str = keys {
        g.bench_function("prefix_10", |b| {
            b.iter(|| {
                let user = rng.below(RECORDS / 10);
                let p = format!("user:{user:06}:");
                let r = store.prefix(KS, p.as_bytes(), 100).expect("prefix");
                assert_eq!(r.len(), 10);
                black_box(r)
            })
        });
    }

    for size in [1u64, 64, 512] {
        g.throughput(Throughput::Elements(size));
        g.bench_with_input(BenchmarkId::new("apply", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for n in 0..iters {
                    // Overwrites of random existing keys keep the data set at 100k records.
                    let mut batch = WriteBatch::with_capacity(size as usize);
                    for _ in 0..size {
                        let i = rng.below(RECORDS);
                        batch.put(KS, &all_keys[i as usize], &value(i ^ n));
                    }
                    f.lsn += 1;
                    let t = Instant::now();
                    store.apply(&batch, f.lsn).expect("apply");
                    spent += t.elapsed();
                    if f.lsn & (PERSIST_EVERY - 1) == 0 {
                        store.persist().expect("persist");
                    }
                }
                spent
            })
        });
    }

    // Checkpoint cost after a typical interval's worth of writes (256 batches of 64 puts).
    g.throughput(Throughput::Elements(1));
    g.bench_function("persist_after_256x64", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for n in 0..iters {
                for _ in 0..PERSIST_EVERY {
                    let mut batch = WriteBatch::with_capacity(64);
                    for _ in 0..64 {
                        let i = rng.below(RECORDS);
                        batch.put(KS, &all_keys[i as usize], &value(i ^ n));
                    }
                    f.lsn += 1;
                    store.apply(&batch, f.lsn).expect("apply");
                }
                let t = Instant::now();
                store.persist().expect("persist");
                spent += t.elapsed();
            }
            spent
        })
    });

    // Two reader threads doing point gets while one writer applies batches of 64 puts.
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_hit_2_readers_with_writer", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let store = Arc::clone(&store);
                let stop = Arc::clone(&stop);
                let keys_w = Arc::clone(&all_keys);
                let mut lsn = f.lsn;
                std::thread::spawn(move || {
                    let mut rng = Rng(0xDEAD_BEEF);
                    let mut batches = 0u64;
                    // Bounded by the stop flag; the cap only guards a hang.
                    while !stop.load(Ordering::Relaxed) && batches < 10_000_000 {
                        let mut batch = WriteBatch::with_capacity(64);
                        for _ in 0..64 {
                            let i = rng.below(RECORDS);
                            batch.put(KS, &keys_w[i as usize], &value(i));
                        }
                        lsn += 1;
                        store.apply(&batch, lsn).expect("apply");
                        if lsn & (PERSIST_EVERY - 1) == 0 {
                            store.persist().expect("persist");
                        }
                        batches += 1;
                    }
                    lsn
                })
            };
            let per_reader = iters.div_ceil(2);
            let t = Instant::now();
            let readers: Vec<_> = (0..2u64)
                .map(|r| {
                    let store = Arc::clone(&store);
                    let keys_r = Arc::clone(&all_keys);
                    std::thread::spawn(move || {
                        let mut rng = Rng(0x1234_5678 + r);
                        for _ in 0..per_reader {
                            let k = &keys_r[rng.below(RECORDS) as usize];
                            black_box(store.get(KS, k).expect("get").expect("hit"));
                        }
                    })
                })
                .collect();
            for r in readers {
                r.join().expect("reader");
            }
            let elapsed = t.elapsed();
            stop.store(true, Ordering::Relaxed);
            f.lsn = writer.join().expect("writer");
            elapsed
        })
    });
    g.finish();
}

fn stores(c: &mut Criterion) {
    for keys in [Keys::U64, Keys::Str] {
        for name in ["fjall", "redb"] {
            let mut f = fixture(name, keys);
            bench_store(c, &mut f);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stores
}
criterion_main!(benches);
