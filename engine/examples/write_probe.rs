//! A quick probe of the durable write path (not a benchmark of record: those are in `benches/`):
//! `cargo run --release -p kassa-engine --example write_probe -- [shards] [commands] [in_flight]`.
//! Small baskets (one line per user), many concurrent submitters, sync durability.

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use futures::StreamExt;
use kassa_engine::{Engine, EngineConfig, ProductInput, cmd};

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let shards = args.first().copied().unwrap_or(1) as usize;
    let commands = args.get(1).copied().unwrap_or(200_000);
    let in_flight = args.get(2).copied().unwrap_or(512) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.shards = shards;
    let engine = Engine::open(cfg).unwrap();
    for id in 1..=shards as u64 {
        let input = ProductInput {
            name: format!("p{id}"),
            description: String::new(),
            price: 100,
            stock: 1_000_000_000,
            category: "c".into(),
            image_url: String::new(),
        };
        engine.run_blocking(cmd::create_product_with_id(id, input)).unwrap();
    }
    let started = Instant::now();
    let failed = futures::executor::block_on(
        futures::stream::iter(0..commands)
            .map(|i| {
                let engine = engine.clone();
                let command = cmd::add_item(format!("u{}", i % 50_000), 1 + i % shards as u64, 1);
                async move { engine.run(command).await }
            })
            .buffer_unordered(in_flight)
            .fold(0u64, |f, r| async move { f + u64::from(r.is_err()) }),
    );
    let secs = started.elapsed().as_secs_f64();
    let stats = engine.stats().shards[0];
    let batches = stats.batches_total.max(1);
    let sync_us = stats.sync_micros_total / batches;
    println!(
        "{commands} commands, {failed} failed, {shards} shard(s): {:.0} commands/s; shard 0: {batches} syncs, {:.0} commands per sync, {sync_us} µs per sync",
        commands as f64 / secs,
        stats.commands_total as f64 / batches as f64
    );
    engine.shutdown();
}
