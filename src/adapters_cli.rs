//! `kassa adapters …`: the DDL an adapter creates (for operators who run DDL themselves), and a running
//! node's adapter status and verification through its admin API.

use anyhow::Context as _;

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum AdaptersCmd {
    /// Print the schema (DDL, keys or topics) an adapter creates: postgres, mariadb, redis or kafka.
    Schema {
        target: String,
        #[command(flatten)]
        common: crate::config::Overrides,
    },
    /// Show each adapter's state, cursor, lag and dead letters on a running node.
    Status(Remote),
    /// Compare every mirror with the engine, row by row and key by key, and print every difference.
    /// Exits 1 unless every mirror is equal to the engine.
    Verify {
        #[command(flatten)]
        remote: Remote,
        /// Seconds to wait, per round, for a mirror to reach the engine's snapshot.
        #[arg(long, default_value_t = 10)]
        settle_s: u64,
    },
}

#[derive(clap::Args)]
pub struct Remote {
    /// The node's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin token (see `kassa token --role admin`).
    #[arg(long, env = "KASSA_TOKEN")]
    token: Option<String>,
}

pub fn run(cmd: AdaptersCmd) -> anyhow::Result<bool> {
    match cmd {
        AdaptersCmd::Schema { target, common } => {
            let cfg = Config::load(&common)?;
            let currency = kassa_engine::Currency::from_code(&cfg.engine.currency)
                .ok_or_else(|| anyhow::anyhow!("unknown currency {:?}", cfg.engine.currency))?;
            let ddl = kassa_adapters::schema(&target, &cfg.adapters, currency)
                .ok_or_else(|| anyhow::anyhow!("unknown adapter {target:?}: one of {}", kassa_adapters::TARGETS.join(", ")))?;
            println!("{ddl}");
            Ok(true)
        }
        AdaptersCmd::Status(remote) => {
            let body = call(&remote, reqwest::Method::GET, "/admin/adapters")?;
            print_status(&body);
            Ok(true)
        }
        AdaptersCmd::Verify { remote, settle_s } => {
            let body = call(&remote, reqwest::Method::POST, &format!("/admin/adapters/verify?settle_s={settle_s}"))?;
            Ok(print_verification(&body))
        }
    }
}

fn call(remote: &Remote, method: reqwest::Method, path: &str) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let url = format!("{}{path}", remote.url.trim_end_matches('/'));
        let mut req = reqwest::Client::new().request(method, &url);
        if let Some(token) = &remote.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.with_context(|| format!("{url} did not answer JSON"))?;
        anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
        Ok(body)
    })
}

fn print_status(body: &serde_json::Value) {
    let adapters = body["adapters"].as_array().cloned().unwrap_or_default();
    if adapters.is_empty() {
        println!("no adapters are enabled on this node");
    }
    println!(
        "{:<10} {:>5} {:<14} {:>12} {:>12} {:>10} {:>10} {:>8}  last error",
        "adapter", "shard", "state", "cursor", "head", "lag", "lag_s", "dead"
    );
    for a in &adapters {
        for s in a["shards"].as_array().into_iter().flatten() {
            println!(
                "{:<10} {:>5} {:<14} {:>12} {:>12} {:>10} {:>10.3} {:>8}  {}",
                a["name"].as_str().unwrap_or("?"),
                s["shard"],
                s["state"].as_str().unwrap_or("?"),
                s["cursor"],
                s["head"],
                s["lag_lsn"],
                s["lag_seconds"].as_f64().unwrap_or(0.0),
                s["dead_letters_total"],
                s["last_error"].as_str().unwrap_or("")
            );
        }
    }
    for c in body["feed_cursors"].as_array().into_iter().flatten() {
        println!("feed cursor {} shard {}: next lsn {}, pinning {} bytes", c["name"], c["shard"], c["next_lsn"], c["pinned_bytes"]);
    }
    println!("feed cursors dropped by retention: {}", body["feed_cursors_dropped_total"]);
}

/// Prints every difference; true when every mirror is equal to the engine.
fn print_verification(body: &serde_json::Value) -> bool {
    for a in body["adapters"].as_array().into_iter().flatten() {
        let name = a["adapter"].as_str().unwrap_or("?");
        if let Some(e) = a["error"].as_str() {
            println!("{name}: could not be verified: {e}");
            continue;
        }
        for s in a["shards"].as_array().into_iter().flatten() {
            let settled =
                if s["settled"].as_bool() == Some(true) { "" } else { " (not settled: writes were going on; differences may be lag)" };
            let diffs = s["differences"].as_array().cloned().unwrap_or_default();
            println!(
                "{name} shard {}: {} keys compared at lsn {}, {} differences{settled}",
                s["shard"],
                s["compared"],
                s["snapshot_lsn"],
                diffs.len()
            );
            for d in diffs {
                println!("  {}\n    engine: {}\n    target: {}", d["key"].as_str().unwrap_or("?"), show(&d["engine"]), show(&d["target"]));
            }
        }
    }
    let clean = body["clean"].as_bool() == Some(true);
    println!("{}", if clean { "verify: every mirror equals the engine" } else { "verify: differences found" });
    clean
}

fn show(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| "(absent)".to_string(), str::to_string)
}
