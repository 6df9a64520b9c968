//! The alert rules in `deploy/prometheus/` pass `promtool check rules` and their own `promtool test
//! rules`, and every Kassa figure the rules and the Grafana dashboard (`deploy/grafana/kassa.json`) ask
//! for is one a running node serves on `/metrics` (all of them: the mirrors, the payment providers and
//! the notification senders configured, their targets absent).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Server;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_the_rules_and_the_dashboard_read_is_served() {
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

    // A node with a mirror, Stripe and a webhook channel configured, none of them reachable.
    let config = "[adapters.redis]\nurl = \"redis://127.0.0.1:1/0\"\n\
        [payments.stripe]\nenabled = true\napi_key = \"sk_test_figures\"\nbase_url = \"http://127.0.0.1:1\"\n\
        [notifications.webhook]\nurl = \"http://127.0.0.1:1/hook\"\nsecret = \"s\"\n";
    let s = Server::start_configured(tempfile::tempdir().unwrap(), config, &[]);
    // One request, so that the request figures have a sample.
    s.get("/products/1").await;
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
