//! `kassa adapters verify`: each target compared with the engine, shard by shard, key by key, as the
//! target itself renders the engine's entities ([`Target::render`]) against what it reads back
//! ([`Target::read_back`]).
//!
//! A comparison is only meaningful at one position of the feed: a round takes the shard's snapshot at LSN
//! `L`, waits for the target's cursor to reach `L + 1`, reads the target, and counts as settled only if the
//! cursor was still `L + 1` after the read. Under steady writes a round may not settle; after a few the last
//! one is reported with `settled: false` (its differences may be lag, not loss).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kassa_engine::Engine;
use serde::Serialize;

use crate::{Connect, Entity, Target, TargetError};

const ROUNDS: usize = 5;

/// One key where the target and the engine disagree (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub key: String,
    pub engine: Option<String>,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShardVerification {
    pub shard: usize,
    pub snapshot_lsn: u64,
    pub target_cursor: Option<u64>,
    /// Keys compared (the union of both sides).
    pub compared: usize,
    pub settled: bool,
    pub differences: Vec<Difference>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub adapter: String,
    pub shards: Vec<ShardVerification>,
    /// Set when the target could not be read at all.
    pub error: Option<String>,
}

impl Verification {
    pub fn differences(&self) -> usize {
        self.shards.iter().map(|s| s.differences.len()).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.differences() == 0 && self.shards.iter().all(|s| s.settled)
    }
}

/// Compares every shard of `connect`'s target with `engine`, waiting up to `settle` per round for the
/// target to reach the snapshot.
pub async fn verify<C: Connect>(engine: &Engine, connect: &C, settle: Duration) -> Verification {
    let mut shards = Vec::new();
    for shard in 0..engine.shards() {
        match verify_shard(engine, connect, shard, settle).await {
            Ok(v) => shards.push(v),
            Err(e) => return Verification { adapter: connect.name().to_string(), shards, error: Some(format!("shard {shard}: {e}")) },
        }
    }
    Verification { adapter: connect.name().to_string(), shards, error: None }
}

async fn verify_shard<C: Connect>(engine: &Engine, connect: &C, shard: usize, settle: Duration) -> Result<ShardVerification, TargetError> {
    let mut target = connect.connect_reader(shard, engine.shards()).await?;
    let mut last = None;
    for _ in 0..ROUNDS {
        let (lsn, entities) = snapshot(engine, shard).await?;
        let deadline = Instant::now() + settle;
        let mut before = target.cursor().await?;
        while before.is_none_or(|c| c <= lsn) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            before = target.cursor().await?;
        }
        let found = target.read_back().await?;
        let after = target.cursor().await?;
        // Rendered after the read: a target may learn from reading what it has published (Kafka).
        let expected: BTreeMap<String, String> = entities.iter().flat_map(|e| target.render(e)).collect();
        let settled = before == Some(lsn + 1) && after == before;
        let result = compare(shard, lsn, after, settled, &expected, &found);
        if settled {
            return Ok(result);
        }
        last = Some(result);
    }
    Ok(last.expect("at least one round"))
}

async fn snapshot(engine: &Engine, shard: usize) -> Result<(u64, Vec<Entity>), TargetError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let snapshot = engine.snapshot(shard, None)?;
        let mut out = Vec::new();
        crate::entity::walk(&snapshot, &mut |e| {
            out.push(e);
            true
        })?;
        Ok::<_, kassa_engine::FeedError>((snapshot.lsn(), out))
    })
    .await
    .map_err(|e| TargetError::Unavailable(format!("snapshot reader: {e}")))?
    .map_err(|e| TargetError::Unavailable(format!("snapshot: {e}")))
}

fn compare(
    shard: usize,
    snapshot_lsn: u64,
    target_cursor: Option<u64>,
    settled: bool,
    expected: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> ShardVerification {
    let mut keys: Vec<&String> = expected.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    let differences = keys
        .iter()
        .filter_map(|k| {
            let (e, t) = (expected.get(*k), found.get(*k));
            (e != t).then(|| Difference { key: (*k).clone(), engine: e.cloned(), target: t.cloned() })
        })
        .collect();
    ShardVerification { shard, snapshot_lsn, target_cursor, compared: keys.len(), settled, differences }
}
