//! The scale run (`--scale N`): N products and N one-line baskets in a fresh Kassa, its memory at that
//! size, then W8 — SIGKILL and the time until a restarted Kassa on the same data directory serves again,
//! and that everything acknowledged before the kill is still there.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::http::parse;
use crate::kassa::{self, KassaOptions, KassaProcess};
use crate::workloads::{self, Catalog, HttpTarget};

/// Baskets read back after the restart (evenly spread over the seeded users).
const VERIFY_SAMPLES: usize = 1_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ScaleRun {
    pub products: usize,
    pub baskets: usize,
    pub seed_products_s: f64,
    pub seed_baskets_s: f64,
    /// VmRSS and VmHWM once everything is seeded.
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub data_dir_bytes: u64,
    /// From spawning the restarted process to its listening line (printed once the engine is open).
    pub restart_ready_s: Option<f64>,
    /// The engine's own recovery time, from its `engine open` log line.
    pub recovery_ms: Option<u64>,
    pub rss_after_restart_kib: Option<u64>,
    /// Sampled baskets found with their line after the restart, of `verified_of`.
    pub verified: usize,
    pub verified_of: usize,
    pub notes: Vec<String>,
}

/// Seeds `n` products and `n` baskets into a fresh Kassa started with `opts`, kills it with SIGKILL and
/// restarts it on the same data directory.
pub async fn run(opts: &KassaOptions, n: usize, concurrency: usize) -> Result<ScaleRun, BenchError> {
    let mut out = ScaleRun { products: n, baskets: n, ..ScaleRun::default() };
    let server = KassaProcess::start(opts).await?;
    let bearer = if opts.auth { Some(kassa::token(opts, "admin", "bench").await?) } else { None };
    let target = HttpTarget { addr: server.http, bearer: bearer.clone(), timeout: Duration::from_secs(30) };
    eprintln!("kassa-bench: scale run: seeding {n} products and {n} baskets");
    let (catalog, seed_s) = workloads::seed_products(&target, n, concurrency).await?;
    out.seed_products_s = seed_s;
    let users = workloads::users("su", n);
    out.seed_baskets_s = workloads::seed_basket_lines(&target, &catalog, &users, concurrency).await?;
    out.rss_kib = kassa::rss_kib(server.pid);
    out.peak_rss_kib = server.peak_rss_kib();
    out.data_dir_bytes = dir_bytes(&opts.data_dir);
    eprintln!(
        "kassa-bench: scale run: seeded in {:.0} s + {:.0} s, RSS {:.0} MiB; SIGKILL and restart",
        out.seed_products_s,
        out.seed_baskets_s,
        out.rss_kib.unwrap_or(0) as f64 / 1024.0
    );
    server.kill().await?;

    let log_lines_before = std::fs::read_to_string(&opts.log_file).map_or(0, |t| t.lines().count());
    let started = Instant::now();
    let server = KassaProcess::start(opts).await?;
    out.restart_ready_s = Some(started.elapsed().as_secs_f64());
    out.recovery_ms = recovery_ms(&opts.log_file, log_lines_before);
    out.rss_after_restart_kib = kassa::rss_kib(server.pid);
    let target = HttpTarget { addr: server.http, bearer, timeout: Duration::from_secs(30) };
    let (verified, of) = verify(&target, &catalog, &users).await;
    (out.verified, out.verified_of) = (verified, of);
    if verified < of {
        out.notes.push(format!("{} of {of} sampled baskets were missing their line after the restart", of - verified));
    }
    server.stop(Duration::from_secs(60)).await?;
    Ok(out)
}

/// Reads a spread of baskets back: each must hold exactly the one line it was given.
async fn verify(target: &HttpTarget, catalog: &Catalog, users: &[String]) -> (usize, usize) {
    #[derive(Deserialize)]
    struct Item {
        product_id: u64,
    }
    #[derive(Deserialize)]
    struct Basket {
        items: Vec<Item>,
    }
    let mut client = target.client();
    let step = (users.len() / VERIFY_SAMPLES).max(1);
    let (mut found, mut of) = (0, 0);
    for (i, user) in users.iter().enumerate().step_by(step) {
        of += 1;
        let ok = match client.get(&format!("/api/baskets/{user}")).await.and_then(|r| parse::<Basket>(&r.body)) {
            Ok(b) => b.items.len() == 1 && b.items[0].product_id == catalog.ids[i % catalog.ids.len()],
            Err(_) => false,
        };
        found += usize::from(ok);
    }
    (found, of)
}

/// `recovery_ms` of the first `engine open` line after line `skip` of the server's log (JSON or text).
fn recovery_ms(log: &Path, skip: usize) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().skip(skip).filter(|l| l.contains("engine open")).find_map(|l| {
        let rest = &l[l.find("recovery_ms")? + "recovery_ms".len()..];
        let digits: String = rest.trim_start_matches(['"', ':', '=', ' ']).chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
