//! The Kafka broker itself killed mid-load and started again (its own test binary: cargo runs test binaries
//! one after another, so no other test sees the broker go). Writes go on meanwhile; once it is back the
//! Kafka mirror catches up, `verify` finds no difference, and a read-committed consumer sees every event
//! once, in order per key.

mod common;
#[path = "common/estate.rs"]
mod estate;
#[path = "common/mirrors.rs"]
mod mirrors;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use estate::Estate;
use mirrors::{following, until, verified};
use serde_json::json;

async fn shop(s: &Server, user: &str, i: usize) -> String {
    let (status, p) =
        s.send("POST", "/api/products", Some(json!({"name": format!("k{i}"), "price": 3.25, "stock": 2, "category": "c"}))).await;
    assert_eq!(status, 201, "writes go on while the broker is down: {p}");
    let id = p["id"].as_u64().unwrap();
    assert_eq!(s.send("POST", &format!("/api/baskets/{user}/items"), Some(json!({"product_id": id, "quantity": 1}))).await.0, 200);
    let (status, pay) =
        s.send("POST", "/api/payments", Some(json!({"user_id": user, "method": "credit_card", "provider": "stripe"}))).await;
    assert_eq!(status, 201, "{pay}");
    let pid = pay["id"].as_str().unwrap().to_string();
    assert_eq!(s.send("POST", &format!("/api/payments/{pid}/process"), None).await.0, 200);
    pid
}

fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/local/services.sh")
}

/// SIGKILLs the broker started by the services script and waits until its port refuses connections.
fn kill_broker(brokers: &str) {
    let dir = std::env::var("KASSA_SERVICES_DIR").expect("KASSA_SERVICES_DIR is set by services.sh env");
    let pid = std::fs::read_to_string(PathBuf::from(dir).join("kafka/kafka.pid")).expect("the broker's pid file");
    let pid = pid.trim();
    // The recorded pid may be the shell that started java: kill its children too.
    let _ = Command::new("pkill").args(["-KILL", "-P", pid]).status();
    let _ = Command::new("kill").args(["-KILL", pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(brokers).is_ok() {
        assert!(Instant::now() < deadline, "the broker still answers after SIGKILL");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_broker() {
    let status =
        Command::new("bash").arg(services_script()).arg("up").stdout(std::process::Stdio::null()).status().expect("services.sh runs");
    assert!(status.success(), "services.sh up brought the broker back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_mid_load_is_caught_up_without_a_duplicate() {
    let estate = Estate::fresh("broker", 12).await;
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &estate.toml(""), &["--seed-catalog", "false"]);
    following(&s, 4).await;
    let mut payments = Vec::new();
    for i in 0..5 {
        payments.push(shop(&s, &format!("b{i}"), i).await);
    }
    verified(&s).await;

    tokio::task::block_in_place(|| kill_broker(&estate.brokers));
    for i in 5..25 {
        payments.push(shop(&s, &format!("b{}", i % 5), i).await);
    }
    until(&s, "kafka", "lagging while the broker is gone", |shards| shards.iter().any(|x| x["lag_lsn"].as_u64() > Some(0))).await;
    tokio::task::block_in_place(start_broker);
    for i in 25..30 {
        payments.push(shop(&s, &format!("b{}", i % 5), i).await);
    }
    verified(&s).await;

    let ids: Vec<&str> = payments.iter().map(String::as_str).collect();
    let events = estate.kafka_events("read_committed", &ids).await;
    let mut seen = std::collections::HashSet::new();
    let mut completions: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        assert!(seen.insert(e.body["event_id"].as_str().unwrap_or_default().to_string()), "an event seen twice: {e:?}");
        if e.event_type == "payment.completed" {
            *completions.entry(e.key.as_str()).or_default() += 1;
        }
    }
    for p in &payments {
        assert_eq!(completions.get(p.as_str()), Some(&1), "{p} completed once on payment-events");
    }
    drop(s);
    estate.drop_all().await;
}
