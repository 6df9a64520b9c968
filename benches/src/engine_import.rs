//! W6: imports the criterion results of `benches/engine.rs` into a run's result document.

use std::path::Path;

use serde::Deserialize;

use crate::report::{Check, EngineFigure, RunResult};

/// Criterion ids of benches/engine.rs: (group, function, shards or cores the figure is divided by, note).
pub const DURABLE_BENCHES: &[(&str, usize, &str)] = &[
    ("auto_1shard", 1, "store Auto (redb catalog, fjall state), 1 shard"),
    ("auto_2shards", 2, "store Auto, 2 shards"),
    ("fjall_1shard", 1, "all fjall, 1 shard"),
    ("fjall_2shards", 2, "all fjall, 2 shards"),
    ("redb_1shard", 1, "all redb, 1 shard"),
    ("redb_2shards", 2, "all redb, 2 shards"),
];
pub const DURABLE_GROUP: &str = "w6_durable";
pub const READS_GROUP: &str = "w6_reads";
pub const CHECKOUTS_GROUP: &str = "w6_checkouts";
pub const CHECKOUTS_BENCH: &str = "auto_2shards";
pub const READS_BENCH: &str = "product_by_id_100k";
pub const CATEGORY_PAGE_BENCH: &str = "category_page_100k";

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
}

#[derive(Deserialize)]
struct Samples {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// Nanoseconds per iteration of one criterion benchmark, if it ran: all iterations over all measured time
/// (what a throughput figure means; robust against single slow samples on a shared machine), else the
/// mean estimate.
pub fn mean_ns(criterion_dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let dir = criterion_dir.join(group).join(bench).join("new");
    if let Some(s) = std::fs::read_to_string(dir.join("sample.json")).ok().and_then(|t| serde_json::from_str::<Samples>(&t).ok()) {
        let iters: f64 = s.iters.iter().sum();
        let time_ns: f64 = s.times.iter().sum();
        if iters > 0.0 && time_ns > 0.0 {
            return Some(time_ns / iters);
        }
    }
    let text = std::fs::read_to_string(dir.join("estimates.json")).ok()?;
    let e: Estimates = serde_json::from_str(&text).ok()?;
    (e.mean.point_estimate > 0.0).then_some(e.mean.point_estimate)
}

/// Adds the W6 figures and their checks. Returns how many benchmarks were found.
pub fn import(criterion_dir: &Path, r: &mut RunResult) -> usize {
    r.engine.clear();
    r.checks.retain(|c| !c.name.starts_with("W6"));
    let mut found = 0;
    let mut best_per_shard: f64 = 0.0;
    for (bench, shards, note) in DURABLE_BENCHES {
        if let Some(ns) = mean_ns(criterion_dir, DURABLE_GROUP, bench) {
            found += 1;
            // One iteration = one durable command, so 1e9 / ns is commands per second over all shards.
            let total = 1e9 / ns;
            let per_shard = total / *shards as f64;
            best_per_shard = best_per_shard.max(per_shard);
            r.engine.push(EngineFigure { id: format!("{bench} durable commands/s"), ops_per_s: total, note: (*note).into() });
            r.engine.push(EngineFigure {
                id: format!("{bench} per shard"),
                ops_per_s: per_shard,
                note: "durable commands/s / shards".into(),
            });
        }
    }
    if found > 0 {
        r.checks.push(Check {
            name: "W6 durable commands/s per shard".into(),
            target: ">= 200000".into(),
            measured: format!("best {best_per_shard:.0}"),
            met: Some(best_per_shard >= 200_000.0),
        });
    }
    // One iteration = one checkout of three durable commands, two of them crossing shards.
    let checkouts = "add item, create payment, process; store Auto, 2 shards";
    if let Some(per_s) = figure(criterion_dir, r, CHECKOUTS_GROUP, CHECKOUTS_BENCH, "checkouts/s in process", checkouts) {
        found += 1;
        let pg = r.measurement("pg_checkout").map(|m| m.ops_per_s).filter(|v| *v > 0.0);
        r.checks.push(Check {
            name: "W6 checkouts in process".into(),
            target: ">= 10 x pg-checkout".into(),
            measured: match pg {
                Some(pg) => format!("{per_s:.0}/s = {:.2} x pg-checkout ({pg:.0}/s, same run)", per_s / pg),
                None => format!("{per_s:.0}/s (no pg-checkout in this run)"),
            },
            met: pg.map(|pg| per_s >= 10.0 * pg),
        });
    }
    let reads = "engine.product(id), 100k catalog, one thread";
    if let Some(per_core) = figure(criterion_dir, r, READS_GROUP, READS_BENCH, "point reads/s per core", reads) {
        found += 1;
        r.checks.push(Check {
            name: "W6 point reads/s per core".into(),
            target: ">= 5000000".into(),
            measured: format!("{per_core:.0}"),
            met: Some(per_core >= 5_000_000.0),
        });
    }
    found
}

/// Adds one benchmark's figure (one iteration = one operation) and returns its operations per second.
fn figure(criterion_dir: &Path, r: &mut RunResult, group: &str, bench: &str, id: &str, note: &str) -> Option<f64> {
    let per_s = 1e9 / mean_ns(criterion_dir, group, bench)?;
    r.engine.push(EngineFigure { id: id.into(), ops_per_s: per_s, note: note.into() });
    Some(per_s)
}
