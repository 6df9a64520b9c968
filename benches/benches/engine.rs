//! W6: the engine in-process, no network. Durable commands/s with group commit (many concurrent
//! submitters; 1 and 2 shards; store choices Auto, all-fjall, all-redb), durable checkouts/s (add an
//! item, pay, process: W4's three commands without HTTP), point reads/s on one core, and category pages
//! (read and written as the HTTP API answers them) on one core.
//!
//! `cargo bench -p kassa-bench --bench engine`; `kassa-bench import-engine` turns the results into
//! figures of a run (one iteration = one command or one read, so ops/s = 1e9 / mean ns).

// The same allocator as the `kassa` binary, so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use kassa_api::http::product_json::list_body;
use kassa_bench::engine_import::{
    CATEGORY_PAGE_BENCH, CHECKOUTS_BENCH, CHECKOUTS_GROUP, DURABLE_BENCHES, DURABLE_GROUP, READS_BENCH, READS_GROUP,
};
use kassa_engine::{
    Answer, Cmd, Currency, Durability, Engine, EngineConfig, Page, PaymentInput, PaymentStatus, ProductInput, ProductQuery, StoreChoice,
    cmd,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Commands in flight at once: enough for the journal to batch many commands per fdatasync.
const IN_FLIGHT: usize = 512;
const DURABLE_PRODUCTS: u64 = 100;
const DURABLE_USERS: u64 = 16_384;
const READ_PRODUCTS: u64 = 100_000;

fn product(id: u64) -> ProductInput {
    ProductInput {
        name: format!("Bench product {id}"),
        description: "Seeded by kassa-bench".into(),
        price: 199 + (id as i64 * 37) % 99_800,
        stock: 1_000_000_000,
        category: format!("cat-{:05}", id / 100),
        image_url: String::new(),
    }
}

fn open(dir: &std::path::Path, store: StoreChoice, shards: usize, durability: Durability) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.store = store;
    cfg.durability = durability;
    match Engine::open(cfg) {
        Ok(e) => e,
        Err(e) => panic!("engine open in {}: {e}", dir.display()),
    }
}

/// Runs `count` commands with `IN_FLIGHT` outstanding and returns how many failed.
fn drive<T: Answer>(engine: &Engine, commands: impl Iterator<Item = Cmd<T>>) -> u64 {
    futures::executor::block_on(
        futures::stream::iter(commands)
            .map(|c| {
                let engine = engine.clone();
                async move { engine.run(c).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .fold(0u64, |failed, r| async move { failed + u64::from(r.is_err()) }),
    )
}

fn seed(engine: &Engine, products: u64) {
    let failed = drive(engine, (1..=products).map(|id| cmd::create_product_with_id(id, product(id))));
    assert_eq!(failed, 0, "seeding {products} products failed {failed} times");
}

fn durable(c: &mut Criterion) {
    let mut group = c.benchmark_group(DURABLE_GROUP);
    group.throughput(Throughput::Elements(1));
    for (bench, shards, _) in DURABLE_BENCHES {
        let store = match bench.split('_').next() {
            Some("fjall") => StoreChoice::Fjall,
            Some("redb") => StoreChoice::Redb,
            _ => StoreChoice::Auto,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = open(dir.path(), store, *shards, Durability::Sync);
        seed(&engine, DURABLE_PRODUCTS);
        let next = AtomicU64::new(0);
        let failures = AtomicU64::new(0);
        group.bench_function(*bench, |b| {
            b.iter_custom(|iters| {
                let first = next.fetch_add(iters, Ordering::Relaxed);
                let commands = (first..first + iters)
                    .map(|i| cmd::add_item(format!("u{}", i % DURABLE_USERS), 1 + (i / DURABLE_USERS) % DURABLE_PRODUCTS, 1));
                let started = Instant::now();
                failures.fetch_add(drive(&engine, commands), Ordering::Relaxed);
                started.elapsed()
            });
        });
        engine.shutdown();
        let failed = failures.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "{bench}: {failed} durable commands failed");
    }
    group.finish();
}

/// One checkout as W4 does it, through the engine's API: add an item, create the payment, process it.
async fn checkout(engine: Engine, i: u64) -> bool {
    let user = format!("c{i}");
    let product = 1 + i % DURABLE_PRODUCTS;
    if engine.run(cmd::add_item(user.clone(), product, 1)).await.is_err() {
        return false;
    }
    let Ok(pay) = engine.run(cmd::create_payment(PaymentInput::new(user, "credit_card", "stripe"))).await else {
        return false;
    };
    matches!(engine.run(cmd::process_payment(pay.id, "pi")).await, Ok(p) if p.status == PaymentStatus::Completed)
}

fn checkouts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), StoreChoice::Auto, 2, Durability::Sync);
    seed(&engine, DURABLE_PRODUCTS);
    let mut group = c.benchmark_group(CHECKOUTS_GROUP);
    group.throughput(Throughput::Elements(1));
    let next = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    group.bench_function(CHECKOUTS_BENCH, |b| {
        b.iter_custom(|iters| {
            let first = next.fetch_add(iters, Ordering::Relaxed);
            let started = Instant::now();
            let failed = futures::executor::block_on(
                futures::stream::iter(first..first + iters)
                    .map(|i| checkout(engine.clone(), i))
                    .buffer_unordered(IN_FLIGHT)
                    .fold(0u64, |failed, ok| async move { failed + u64::from(!ok) }),
            );
            failures.fetch_add(failed, Ordering::Relaxed);
            started.elapsed()
        });
    });
    group.finish();
    engine.shutdown();
    let failed = failures.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} checkouts failed");
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Seeding is not what is measured here: let it answer before the fsync.
    let engine = open(dir.path(), StoreChoice::Auto, 2, Durability::Async);
    seed(&engine, READ_PRODUCTS);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(engine.product(READ_PRODUCTS), Ok(Some(_))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut group = c.benchmark_group(READS_GROUP);
    group.throughput(Throughput::Elements(1));
    let mut rng = SmallRng::seed_from_u64(7);
    let mut missing = 0u64;
    group.bench_function(READS_BENCH, |b| {
        b.iter(|| {
            let id = rng.random_range(1..=READ_PRODUCTS);
            match engine.product(black_box(id)) {
                Ok(Some(p)) => {
                    black_box(p);
                }
                _ => missing += 1,
            }
        });
    });
    // W2 by category without the network: a whole category (100 products) from the index and the view,
    // written as the HTTP API writes it.
    let mut short = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function(CATEGORY_PAGE_BENCH, |b| {
        b.iter(|| {
            let category = format!("cat-{:05}", rng.random_range(1..READ_PRODUCTS / 100));
            let products = engine.products(&ProductQuery::Category(category), Page::new(0, 100)).unwrap_or_default();
            short += u64::from(products.len() != 100);
            black_box(list_body(&products, Currency::USD, None));
        });
    });
    group.finish();
    engine.shutdown();
    assert_eq!(missing, 0, "{missing} seeded products were not found");
    assert_eq!(short, 0, "{short} category pages were not full");
}

fn config() -> Criterion {
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = engine;
    config = config();
    targets = durable, checkouts, reads
}
criterion_main!(engine);
