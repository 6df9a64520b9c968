//! `/admin/adapters*` and the adapters' figures in `/metrics`: each mirror's state, cursor, lag and dead
//! letters, the engine's feed cursors that pin journal for them, and `verify` on demand.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_adapters::Adapters;
use kassa_engine::{Engine, FeedCursor};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::front::Shared;
use crate::metrics::encode_rows;

/// How long `verify` waits per round for a mirror to reach the engine's snapshot, unless asked otherwise.
const SETTLE_DEFAULT: Duration = Duration::from_secs(10);

pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/adapters", get(status))
        .route("/admin/adapters/dead-letters", get(dead_letters))
        .route("/admin/adapters/verify", post(verify))
        .with_state(shared)
}

fn cursor_json(c: FeedCursor) -> Value {
    match c {
        FeedCursor::New => json!("new"),
        FeedCursor::At(lsn) => json!(lsn),
        FeedCursor::Dropped => json!("dropped"),
    }
}

/// Each adapter's per-shard status, and the engine's feed cursors (the retention pins).
async fn status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let adapters = shared.adapters.as_ref().map(|a| a.status()).unwrap_or_default();
    let (cursors, dropped) = shared.engine.as_ref().map(Engine::feed_cursors).unwrap_or_default();
    let cursors: Vec<Value> = cursors
        .iter()
        .map(|c| json!({"name": c.name, "shard": c.shard, "next_lsn": cursor_json(c.cursor), "pinned_bytes": c.pinned_bytes}))
        .collect();
    Json(json!({"adapters": adapters, "feed_cursors": cursors, "feed_cursors_dropped_total": dropped}))
}

async fn dead_letters(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let letters = shared.adapters.as_ref().map(|a| a.dead_letters()).unwrap_or_default();
    Json(json!({"count": letters.len(), "dead_letters": letters}))
}

#[derive(Deserialize)]
struct VerifyParams {
    /// Seconds to wait per round for a mirror to reach the snapshot.
    settle_s: Option<u64>,
}

/// Compares every mirror with the engine; `clean` is true only if every shard settled with no difference.
async fn verify(State(shared): State<Arc<Shared>>, Query(p): Query<VerifyParams>) -> Json<Value> {
    let settle = p.settle_s.map_or(SETTLE_DEFAULT, |s| Duration::from_secs(s.min(600)));
    let results = match &shared.adapters {
        Some(a) => a.verify(settle).await,
        None => Vec::new(),
    };
    let clean = results.iter().all(|v| v.is_clean());
    let differences: usize = results.iter().map(|v| v.differences()).sum();
    Json(json!({"clean": clean, "differences": differences, "adapters": results}))
}

/// The adapters' figures, read at scrape time.
pub struct AdapterCollector(pub Arc<Adapters>);

impl std::fmt::Debug for AdapterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdapterCollector")
    }
}

impl Collector for AdapterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        let rows = |get: fn(&kassa_adapters::ShardStatus) -> u64| {
            status
                .iter()
                .flat_map(move |a| a.shards.iter().map(move |s| ([("adapter", a.name.clone()), ("shard", s.shard.to_string())], get(s))))
                .collect::<Vec<_>>()
        };
        let gauges = |get| rows(get).into_iter().map(|(l, v)| (l, ConstGauge::new(v as i64)));
        let counters = |get| rows(get).into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        encode_rows(&mut encoder, "kassa_adapter_lag_lsn", "Feed records the mirror has not applied yet", gauges(|s| s.lag_lsn))?;
        let seconds = status.iter().flat_map(|a| {
            a.shards.iter().map(|s| ([("adapter", a.name.clone()), ("shard", s.shard.to_string())], ConstGauge::new(s.lag_seconds)))
        });
        encode_rows(&mut encoder, "kassa_adapter_lag_seconds", "Time since the mirror was last caught up (0 when it is)", seconds)?;
        encode_rows(
            &mut encoder,
            "kassa_adapter_cursor_lsn",
            "The next LSN the mirror needs (its committed cursor)",
            gauges(|s| s.cursor),
        )?;
        encode_rows(&mut encoder, "kassa_adapter_applied", "Feed records written to the target", counters(|s| s.applied_total))?;
        encode_rows(&mut encoder, "kassa_adapter_retries", "Failed target writes retried", counters(|s| s.retries_total))?;
        encode_rows(&mut encoder, "kassa_adapter_bootstraps", "Snapshot copies into the target", counters(|s| s.bootstraps_total))?;
        encode_rows(
            &mut encoder,
            "kassa_adapter_dead_letters",
            "Records the target rejected, kept as dead letters",
            counters(|s| s.dead_letters_total),
        )?;
        let up = status.iter().flat_map(|a| {
            a.shards.iter().map(|s| {
                let following = i64::from(s.state == kassa_adapters::ShardState::Following);
                ([("adapter", a.name.clone()), ("shard", s.shard.to_string())], ConstGauge::new(following))
            })
        });
        encode_rows(&mut encoder, "kassa_adapter_following", "1 while the mirror follows the feed (0: connecting, copying, retrying)", up)
    }
}
