#![allow(dead_code)]
//! Waiting on the mirrors of a running node through its admin API (observable state, bounded).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Server;

/// Waits until every configured adapter follows the feed (a new Kafka mirror publishes from the position
/// it starts at, so tests wait for this before the flows they check).
pub async fn following(s: &Server, adapters: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = s.get("/admin/adapters").await.1;
        let all = status["adapters"].as_array().cloned().unwrap_or_default();
        if all.len() == adapters && all.iter().all(|a| a["shards"].as_array().unwrap().iter().all(|x| x["state"] == "following")) {
            return;
        }
        assert!(Instant::now() < deadline, "adapters not following: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `verify` says every mirror equals the engine, returning its last answer. Each call waits at
/// most a few seconds per round for the mirrors to settle.
pub async fn verified(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        // Its own client: a verify that does not settle takes rounds × shards × adapters × settle.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("client");
        let resp = client.post(s.url("/admin/adapters/verify?settle_s=4")).send().await.expect("verify answers");
        let (status, body) = crate::common::read(resp).await;
        assert_eq!(status, 200, "{body}");
        if body["clean"] == json!(true) {
            return body;
        }
        assert!(Instant::now() < deadline, "mirrors differ from the engine: {body:#}");
    }
}

/// One adapter's per-shard status.
pub async fn shards_of(s: &Server, adapter: &str) -> Vec<Value> {
    let status = s.get("/admin/adapters").await.1;
    status["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == adapter)
        .map(|a| a["shards"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// Waits until `cond` holds for an adapter's shards.
pub async fn until(s: &Server, adapter: &str, what: &str, cond: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shards = shards_of(s, adapter).await;
        if cond(&shards) {
            return;
        }
        assert!(Instant::now() < deadline, "{adapter}: {what}: {shards:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
