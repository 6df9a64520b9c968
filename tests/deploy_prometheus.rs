//! The alert rules in `deploy/prometheus/` pass `promtool check rules` and their own `promtool test
//! rules`, and every Kassa figure the rules and the Grafana dashboard (`deploy/grafana/kassa.json`) ask
//! for is one a running node serves on `/metrics` (all of them: the mirrors, the payment providers and
//! the notification senders configured, their targets absent), and a real Prometheus scraping a node
//! evaluates every rule and finds data for every one of those figures.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::json;

/// Figures that are not Kassa's to serve: `up` is Prometheus's own; the replica's lag comes with the
/// primary/replica pair, which does not exist yet.
const NOT_SERVED_HERE: &[&str] = &["up", "kassa_replica_lag_seconds"];

fn promtool() -> String {
    std::env::var("KASSA_PROMTOOL")
        .unwrap_or_else(|_| panic!("KASSA_PROMTOOL is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"))
}

fn run_promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let out = Command::new(promtool()).args(args).current_dir(dir).output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_rules_pass_promtool_and_their_tests() {
    let checked = run_promtool(&["check", "rules", "kassa-rules.yml"]);
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    let tested = run_promtool(&["test", "rules", "kassa-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The figure names an expression reads (identifiers before a selector, range or operator that are not
/// PromQL's own words).
fn figures_in(expr: &str, out: &mut BTreeSet<String>) {
    const PROMQL: &[&str] =
        &["sum", "by", "rate", "increase", "histogram_quantile", "le", "and", "or", "unless", "on", "without", "max", "min", "avg"];
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_lowercase()) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let word = &tail[..end];
        let seen = &expr[..expr.len() - rest.len() + start];
        let before = seen.chars().last();
        let inside_braces = seen.matches('{').count() > seen.matches('}').count() || seen.matches('[').count() > seen.matches(']').count();
        let after = tail[end..].trim_start().chars().next();
        // A label name inside a selector, a `by (...)` list, a string or a template variable is not a figure.
        let quoted = seen.matches('"').count() % 2 == 1;
        if !inside_braces && !quoted && before != Some('$') && !PROMQL.contains(&word) && after != Some('(') && word.contains('_') {
            out.insert(word.to_string());
        }
        rest = &tail[end..];
    }
}

/// Every figure the rules' and the dashboard's expressions read.
fn figures_read() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut wanted = BTreeSet::new();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/kassa-rules.yml")).unwrap();
    let mut in_expr = false;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(expr) = t.strip_prefix("expr:") {
            in_expr = expr.trim() == ">";
            figures_in(expr, &mut wanted);
        } else if in_expr && !t.contains(':') {
            figures_in(t, &mut wanted);
        } else {
            in_expr = false;
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/kassa.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        figures_in(target["expr"].as_str().unwrap(), &mut wanted);
    }
    for name in ["kassa_engine_open", "kassa_adapter_lag_seconds", "notification_failed_total", "http_requests_total"] {
        assert!(wanted.contains(name), "the expressions were read ({name} among {wanted:?})");
    }
    wanted
}

/// A node with a mirror, Stripe and a webhook channel configured (none of them reachable) that has
/// done a little of everything, so that every figure has a sample: a request, a simulated charge, a
/// Stripe charge that cannot be made, a webhook delivery that fails for good.
async fn node_with_everything() -> Server {
    let config = "[adapters.redis]\nurl = \"redis://127.0.0.1:1/0\"\n\
        [payments]\nbackoff_ms = 10\n\
        [payments.stripe]\nenabled = true\napi_key = \"sk_test_figures\"\nbase_url = \"http://127.0.0.1:1\"\n\
        [notifications.webhook]\nurl = \"http://127.0.0.1:1/hook\"\nsecret = \"s\"\nmax_attempts = 1\n";
    let s = Server::start_configured(tempfile::tempdir().unwrap(), config, &[]);
    for (user, provider) in [("fig", "simulated"), ("gus", "stripe")] {
        assert_eq!(s.send("POST", &format!("/baskets/{user}/items"), Some(json!({"product_id": 2, "quantity": 1}))).await.0, 200);
        let checkout = json!({"user_id": user, "method": "credit_card", "provider": provider, "token": "tok_visa"});
        let (status, p) = s.send("POST", "/api/payments", Some(checkout)).await;
        assert_eq!(status, 201, "{p}");
        let (status, _) = s.send("POST", &format!("/api/payments/{}/process", p["id"].as_str().unwrap()), None).await;
        // Stripe cannot be reached: neither charged nor voided for sure, so still processing (202).
        assert!(matches!(status, 200 | 202), "{provider}: {status}");
    }
    let note = json!({"user_id": "fig", "title": "t", "message": "m", "type": "order", "channel": "webhook", "priority": "high"});
    let (_, n) = s.send("POST", "/api/v1/notifications", Some(note)).await;
    s.until(&format!("/api/v1/notifications/{}", n["notification"]["id"].as_str().unwrap()), |b| b["notification"]["status"] == "failed")
        .await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_the_rules_and_the_dashboard_read_is_served() {
    let wanted = figures_read();
    let s = node_with_everything().await;
    let text = s.metrics().await;
    let mut served = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            served.insert(name.to_string());
            match kind {
                "counter" => {
                    served.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        served.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {}
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            served.insert(line.split(['{', ' ']).next().unwrap().to_string());
        }
    }
    let missing: Vec<&String> = wanted.iter().filter(|w| !served.contains(*w) && !NOT_SERVED_HERE.contains(&w.as_str())).collect();
    assert!(missing.is_empty(), "read by the rules or the dashboard, not served: {missing:?}\n{text}");
}

/// Prometheus's answer to an instant query: its result vector.
async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Vec<serde_json::Value> {
    let answer: serde_json::Value = match client.get(format!("{base}/api/v1/query")).query(&[("query", promql)]).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return Vec::new(),
    };
    answer["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_node_evaluates_every_rule_and_finds_every_figure() {
    let prometheus = std::env::var("KASSA_PROMETHEUS")
        .unwrap_or_else(|_| panic!("KASSA_PROMETHEUS is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"));
    let s = node_with_everything().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/kassa-rules.yml");
    let target = s.http.trim_start_matches("http://");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{rules:?}]\n\
         scrape_configs:\n  - job_name: kassa\n    static_configs: [{{targets: [{target:?}]}}]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Scraped, and every rule evaluated without error.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let up = query(&client, &base, "up{job=\"kassa\"}").await;
        let rules: serde_json::Value = match client.get(format!("{base}/api/v1/rules")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let evaluated: Vec<&serde_json::Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .filter(|r| r["health"] == "ok")
            .collect();
        if up.first().is_some_and(|u| u["value"][1] == "1") && evaluated.len() == 12 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not scraped and evaluated: up {up:?}, rules {rules}\n{}", log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Every figure the rules and the dashboard read has data in Prometheus.
    let mut missing = Vec::new();
    for figure in figures_read() {
        if figure != "kassa_replica_lag_seconds" && query(&client, &base, &format!("count({figure})")).await.is_empty() {
            missing.push(figure);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(missing.is_empty(), "no data in Prometheus for {missing:?}");
}
