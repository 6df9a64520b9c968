//! `kassa gateway` in front of two `kassa serve --auth off` processes: reads spread over both, writes
//! go to the primary, a killed node's breaker opens while reads keep succeeding, and after a restart
//! the breaker goes half-open and closes again.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};

struct Proc {
    child: Child,
    http: String,
    grpc: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kassa ARGS... --data-dir DATA` and waits for its addresses.
fn start(args: &[&str], data: &Path) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command.args(args).arg("--data-dir").arg(data);
    let (child, field) = common::spawn_kassa(command);
    Proc { http: field("http="), grpc: field("grpc="), child }
}

fn node(data: &Path, http: &str, grpc: &str) -> Proc {
    start(&["serve", "--auth", "off", "--shards", "1", "--http", http, "--grpc", grpc], data)
}

async fn breaker_state(c: &reqwest::Client, gw: &Proc, token: &str, upstream: &str) -> String {
    let v: Value =
        c.get(format!("http://{}/admin/circuitbreaker/kassa", gw.http)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let b = v["backends"].as_array().unwrap().iter().find(|b| b["url"].as_str().unwrap().contains(upstream)).unwrap().clone();
    b["state"].as_str().unwrap().to_string()
}

async fn served_by(c: &reqwest::Client, gw: &Proc, token: &str) -> Vec<u64> {
    let v: Value = c.get(format!("http://{}/admin/services", gw.http)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    v["kassa"].as_array().unwrap().iter().map(|b| b["total_requests"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_spreads_reads_survives_a_dead_node_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "127.0.0.1:0", "127.0.0.1:0");
    let mut b = Some(node(&dir.path().join("b"), "127.0.0.1:0", "127.0.0.1:0"));
    let (b_http, b_grpc) = {
        let b = b.as_ref().unwrap();
        (b.http.clone(), b.grpc.clone())
    };
    let gw_data = dir.path().join("gw");
    let config = dir.path().join("gw.toml");
    // The open timeout is long enough that the reads between B's trip and the check that it is open cannot
    // outlast it on a loaded machine; nothing sleeps for it (the test polls the breaker's state, which the
    // admin class's 50 requests a minute would refuse: the rate limits have their own tests).
    std::fs::write(
        &config,
        "[gateway.breaker]\ntimeout_ms = 3000\nmax_requests = 2\n[gateway.health_check]\nenabled = false\n[gateway.rate_limit]\nenabled = false\n",
    )
    .unwrap();
    let upstream_a = format!("http://{},grpc=http://{}", a.http, a.grpc);
    let upstream_b = format!("http://{b_http},grpc=http://{b_grpc}");
    let gw = start(
        &[
            "gateway",
            "--config",
            config.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
            "--upstream",
            &upstream_a,
            "--upstream",
            &upstream_b,
            "--strategy",
            "round_robin",
        ],
        &gw_data,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["token", "--role", "admin", "--subject", "ops", "--data-dir"])
        .arg(&gw_data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let get = |path: &str| c.get(format!("http://{}{path}", gw.http)).send();

    for _ in 0..10 {
        assert_eq!(get("/api/products/1").await.unwrap().status(), 200);
    }
    assert_eq!(served_by(&c, &gw, &token).await, [5, 5], "round robin over both nodes");

    // Writes need an admin at the gateway and land on the primary only.
    let body = json!({"name": "Chair", "description": "", "price": 42.0, "stock": 3, "category": "home"});
    let r = c.post(format!("http://{}/api/products", gw.http)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(format!("http://{}/api/products", gw.http)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    assert_eq!(c.get(format!("http://{}/api/products/{id}", a.http)).send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("http://{b_http}/api/products/{id}")).send().await.unwrap().status(), 404);

    // Kill B: no client sees an error on reads; B's breaker opens.
    drop(b.take());
    for i in 0..20 {
        assert_eq!(get("/api/products/1").await.unwrap().status(), 200, "read {i}");
    }
    assert_eq!(breaker_state(&c, &gw, &token, &b_http).await, "open");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("gateway_circuit_breaker_state{{upstream=\"http://{b_http}/\"}} 1")), "{metrics}");

    // Restart B on its old addresses: the timeout leads to half-open (not straight to closed), and two
    // good probes close it. The polls every 20 ms are bounded by a minute: a guard against a state that
    // never comes, not a claim about how soon it comes.
    b = Some(node(&dir.path().join("b"), &b_http, &b_grpc));
    let mut state = breaker_state(&c, &gw, &token, &b_http).await;
    for _ in 0..3_000 {
        if state != "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = breaker_state(&c, &gw, &token, &b_http).await;
    }
    assert_eq!(state, "half-open", "B's breaker after its open timeout");
    // Round robin sends every other read to B, so its two probes are among the next four reads.
    for read in 0..4 {
        assert_eq!(get("/api/products/1").await.unwrap().status(), 200, "read {read} while B is half-open");
    }
    assert_eq!(breaker_state(&c, &gw, &token, &b_http).await, "closed", "two good probes close the breaker");
    let before = served_by(&c, &gw, &token).await;
    for _ in 0..4 {
        assert_eq!(get("/api/products/1").await.unwrap().status(), 200);
    }
    let after = served_by(&c, &gw, &token).await;
    assert_eq!((after[0] - before[0], after[1] - before[1]), (2, 2), "B back in rotation");
    drop(b);
}
