//! The access log of the real binary: every error gets a line, ordinary requests one in `sample_every`,
//! each line saying how many requests it stands for.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// The access-log lines (`message` "http") written so far, in order.
fn access_lines(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "http")
        .map(|line| line["fields"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_all_logged_and_ordinary_requests_sampled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("kassa.log");
    let toml = "[gateway.access_log]\nsample_every = 3\nslow_ms = 600000\n";
    let s = Server::start_logged(tempfile::tempdir().expect("tempdir"), toml, &log);

    for i in 0..6 {
        let (status, _) = s.raw("GET", "/api/products/1", Vec::new(), &[("x-request-id", &format!("ok-{i}"))]).await;
        assert_eq!(status, 200);
    }
    for i in 0..2 {
        let (status, _) = s.raw("GET", "/api/products/987654321", Vec::new(), &[("x-request-id", &format!("missing-{i}"))]).await;
        assert_eq!(status, 404);
    }
    // Each line is written before its response goes out: once the last request's line is there, so are
    // all earlier ones.
    let (status, _) = s.raw("GET", "/api/products/not-a-number", Vec::new(), &[("x-request-id", "last")]).await;
    assert_eq!(status, 400);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = access_lines(&log);
        if lines.iter().any(|l| l["request_id"] == "last") {
            break lines;
        }
        assert!(Instant::now() < deadline, "the last request's line never appeared: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let seen: Vec<(&str, u64, u64)> =
        lines.iter().map(|l| (l["request_id"].as_str().unwrap(), l["status"].as_u64().unwrap(), l["sample"].as_u64().unwrap())).collect();
    assert_eq!(seen, [("ok-0", 200, 3), ("ok-3", 200, 3), ("missing-0", 404, 1), ("missing-1", 404, 1), ("last", 400, 1)]);
    for line in &lines {
        assert_eq!(line["route"], "/api/products/{id}", "the route template, never the raw path: {line}");
        assert!(line["latency_us"].is_u64(), "{line}");
        assert_eq!(line["user"], "-");
    }
}
