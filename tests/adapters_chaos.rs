//! The mirrors under faults, against the real targets: a target that goes away mid-load (through a proxy
//! the test cuts), Kassa killed with SIGKILL mid-load, a rewound cursor, and a retention cap that forces a
//! new snapshot. In every case, once caught up, `verify` finds no difference, and no Kafka consumer sees
//! the events of one key out of order or twice.

mod common;
#[path = "common/estate.rs"]
mod estate;
#[path = "common/mirrors.rs"]
mod mirrors;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Server;
use estate::{Estate, host_port};
use mirrors::{following, shards_of, until, verified};
use proxy::Proxy;
use serde_json::json;

/// Each test runs a node with four mirrors under load: one at a time, or two cores would make every
/// round of `verify` race the next write.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// A shopping round for `user`: a product, a basket, a completed payment. Returns the payment id.
async fn shop(s: &Server, user: &str, i: usize) -> String {
    let (status, p) =
        s.send("POST", "/api/products", Some(json!({"name": format!("p{i}"), "price": 2.5, "stock": 3, "category": "c"}))).await;
    assert_eq!(status, 201, "writes go on whatever the mirrors do: {p}");
    let id = p["id"].as_u64().unwrap();
    let (status, b) = s.send("POST", &format!("/api/baskets/{user}/items"), Some(json!({"product_id": id, "quantity": 1}))).await;
    assert_eq!(status, 200, "{b}");
    let (status, pay) =
        s.send("POST", "/api/payments", Some(json!({"user_id": user, "method": "credit_card", "provider": "stripe"}))).await;
    assert_eq!(status, 201, "{pay}");
    let pid = pay["id"].as_str().unwrap().to_string();
    let (status, done) = s.send("POST", &format!("/api/payments/{pid}/process"), None).await;
    assert_eq!(status, 200, "{done}");
    pid
}

/// Per key on `payment-events`, the event types in offset order, and every event id seen.
fn kafka_order_holds(events: &[estate::KafkaEvent]) {
    let mut ids = std::collections::HashSet::new();
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in events {
        assert!(ids.insert(e.body["event_id"].as_str().unwrap_or_default().to_string()), "an event seen twice: {e:?}");
        if e.topic == "payment-events" {
            per_key.entry(&e.key).or_default().push(&e.event_type);
        }
    }
    for (key, types) in per_key {
        assert_eq!(types.iter().filter(|t| **t == "payment.completed").count(), 1, "{key}: {types:?}");
        if let Some(r) = types.iter().position(|t| *t == "payment.refunded") {
            assert!(types[..r].contains(&"payment.completed"), "{key}: refunded before completed: {types:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_go_away_mid_load_are_caught_up() {
    let _alone = alone().await;
    let estate = Estate::fresh("outage", 8).await;
    let proxies =
        [Proxy::start(&host_port(&estate.pg_catalog)), Proxy::start(&host_port(&estate.mysql)), Proxy::start(&host_port(&estate.redis))];
    let hosts: Vec<String> = proxies.iter().map(Proxy::host_port).collect();
    let toml = estate.toml_via("", Some([&hosts[0], &hosts[1], &hosts[2]]));
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &toml, &["--seed-catalog", "false"]);
    following(&s, 4).await;
    let mut payments = Vec::new();
    for i in 0..5 {
        payments.push(shop(&s, &format!("u{i}"), i).await);
    }
    verified(&s).await;
    for p in &proxies {
        p.down();
    }
    // The engine takes writes at full speed while every SQL and cache target is gone; the mirrors find
    // out on their next write and retry.
    for i in 5..20 {
        payments.push(shop(&s, &format!("u{}", i % 7), i).await);
    }
    for name in ["postgres", "mariadb", "redis"] {
        until(&s, name, "retrying while its target is away", |shards| shards.iter().any(|x| x["state"] == "retrying")).await;
    }
    for i in 20..40 {
        payments.push(shop(&s, &format!("u{}", i % 7), i).await);
    }
    for p in &proxies {
        p.up();
    }
    verified(&s).await;
    let retries: u64 = ["postgres", "mariadb", "redis"]
        .iter()
        .map(|n| futures_block(shards_of(&s, n)).iter().map(|x| x["retries_total"].as_u64().unwrap()).sum::<u64>())
        .sum();
    assert!(retries > 0, "the outage was seen");
    let ids: Vec<&str> = payments.iter().map(String::as_str).collect();
    kafka_order_holds(&estate.kafka_events("read_committed", &ids).await);
    drop(s);
    estate.drop_all().await;
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kassa_killed_mid_load_resumes_every_mirror_without_a_duplicate() {
    let _alone = alone().await;
    let estate = Estate::fresh("kill", 9).await;
    let dir = tempfile::tempdir().unwrap();
    let mut payments = Vec::new();
    let s = Server::start_configured(dir, &estate.toml(""), &["--seed-catalog", "false"]);
    following(&s, 4).await;
    for i in 0..20 {
        payments.push(shop(&s, &format!("k{}", i % 5), i).await);
    }
    // SIGKILL while the mirrors are still catching up.
    let dir = s.kill_keep_data();
    let s = Server::start_configured(dir, &estate.toml(""), &["--seed-catalog", "false"]);
    following(&s, 4).await;
    for i in 20..30 {
        payments.push(shop(&s, &format!("k{}", i % 5), i).await);
    }
    verified(&s).await;
    let ids: Vec<&str> = payments.iter().map(String::as_str).collect();
    for isolation in ["read_committed", "read_uncommitted"] {
        let events = estate.kafka_events(isolation, &ids).await;
        if isolation == "read_committed" {
            kafka_order_holds(&events);
        }
        for p in &payments {
            assert!(events.iter().any(|e| e.key == *p && e.event_type == "payment.completed"), "{p} published ({isolation})");
        }
    }
    drop(s);
    estate.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewound_cursor_replays_without_effect() {
    let _alone = alone().await;
    let estate = Estate::fresh("rewind", 10).await;
    let proxy = Proxy::start(&host_port(&estate.pg_catalog));
    let direct = [host_port(&estate.mysql), host_port(&estate.redis)];
    let toml = estate.toml_via("", Some([&proxy.host_port(), &direct[0], &direct[1]]));
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &toml, &["--seed-catalog", "false"]);
    following(&s, 4).await;
    for i in 0..10 {
        shop(&s, &format!("r{i}"), i).await;
    }
    verified(&s).await;
    // An operator (or a restore) rewinds the catalog's cursor; the adapter reconnects and replays.
    let pg = estate.postgres_catalog().await;
    let rewound = pg.execute("UPDATE kassa_cursors SET next_lsn = 1", &[]).await.unwrap();
    assert!(rewound > 0, "the cursor rows exist");
    proxy.reset();
    // The next write of each shard finds its connection gone; it reconnects and reads the rewound cursor.
    for i in 10..16 {
        shop(&s, &format!("r{i}"), i).await;
    }
    until(&s, "postgres", "replayed past the rewind", |shards| shards.iter().all(|x| x["state"] == "following" && x["lag_lsn"] == 0)).await;
    verified(&s).await;
    drop(s);
    estate.drop_all().await;
}

/// Each shard's `kassa_shard_checkpoint_lsn` (set once the shard has removed the segments nobody needs).
async fn checkpoint_lsns(s: &Server) -> Vec<f64> {
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let lsns: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("kassa_shard_checkpoint_lsn{"))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("gauge value"))
        .collect();
    assert!(!lsns.is_empty(), "a checkpoint gauge per shard: {metrics}");
    lsns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_past_the_retention_cap_is_copied_again() {
    let _alone = alone().await;
    let estate = Estate::fresh("retention", 11).await;
    let proxy = Proxy::start(&host_port(&estate.pg_catalog));
    let direct = [host_port(&estate.mysql), host_port(&estate.redis)];
    // Small segments, checkpoints every 100 ms and a cap of 256 KiB: the healthy mirrors stay well within
    // it (a new Kafka mirror without `snapshot` would lose the events of a gap, as verify would say), the
    // stalled PostgreSQL one goes past it.
    let extra = "[engine]\nfeed_retention_bytes = 262144\ncheckpoint_interval_ms = 100\njournal_segment_bytes = 4096\n";
    let toml = estate.toml_via(extra, Some([&proxy.host_port(), &direct[0], &direct[1]]));
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &toml, &["--seed-catalog", "false"]);
    following(&s, 4).await;
    for i in 0..5 {
        shop(&s, &format!("t{i}"), i).await;
    }
    verified(&s).await;
    proxy.down();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 5;
    let dropped: Vec<usize> = loop {
        shop(&s, &format!("t{}", i % 5), i).await;
        i += 1;
        let status = s.get("/admin/adapters").await.1;
        let dropped: Vec<usize> = status["feed_cursors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == "adapter-postgres" && c["next_lsn"] == "dropped")
            .map(|c| c["shard"].as_u64().expect("shard") as usize)
            .collect();
        if !dropped.is_empty() {
            break dropped;
        }
        assert!(Instant::now() < deadline, "the cap never dropped the cursor: {status:#}");
    };
    // A cursor is dropped just before its checkpoint reaches the shards, which then remove the segments
    // it pinned: until a checkpoint has been taken after the drop was seen, a mirror that comes back can
    // still find its position in the journal and rightly follow on without a copy.
    let seen = checkpoint_lsns(&s).await;
    loop {
        shop(&s, &format!("t{}", i % 5), i).await;
        i += 1;
        let now = checkpoint_lsns(&s).await;
        if dropped.iter().all(|&shard| now[shard] > seen[shard]) {
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(60), "no checkpoint after the drop: {seen:?} -> {now:?}");
    }
    proxy.up();
    until(&s, "postgres", "copied again after the drop", |shards| {
        shards.iter().any(|x| x["bootstraps_total"].as_u64() >= Some(2)) && shards.iter().all(|x| x["state"] == "following")
    })
    .await;
    verified(&s).await;
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("kassa_feed_cursors_dropped_total") && !l.ends_with(" 0")), "the alert metric says so");
    drop(s);
    estate.drop_all().await;
}
