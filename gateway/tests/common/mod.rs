//! Shared test scaffolding: an engine in a temp dir, the real API routers, the gateway around them,
//! served by real per-core listeners on 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kassa_engine::{Engine, EngineConfig};
use kassa_gateway::{Front, GatewayConfig, Listeners, RouterFactory};

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct Node {
    pub engine: Engine,
    pub front: Front,
    pub http: Listeners,
    pub grpc: Listeners,
    pub _dir: tempfile::TempDir,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.local_addr())
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.local_addr())
    }
}

pub fn open_engine(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = 1;
    cfg.pin_threads = false;
    Engine::open(cfg).expect("engine opens")
}

pub fn serve(router: axum::Router) -> Listeners {
    let factory: RouterFactory = Arc::new(move || router.clone());
    Listeners::start(SocketAddr::from(([127, 0, 0, 1], 0)), 1, factory).expect("listen")
}

/// A test configuration: auth on with a known admin, and generous limits unless a test narrows them.
pub fn config() -> GatewayConfig {
    let mut cfg = GatewayConfig::default();
    cfg.auth.jwt_secret = Some("test-secret-0123456789".into());
    cfg.auth.admin_password = Some(ADMIN_PASSWORD.into());
    cfg.rate_limit.api.limit = 10_000;
    cfg.rate_limit.api.burst = 10_000;
    cfg.rate_limit.default.limit = 10_000;
    cfg.rate_limit.default.burst = 10_000;
    cfg.rate_limit.admin.limit = 10_000;
    cfg.rate_limit.admin.burst = 10_000;
    cfg
}

/// An embedded node: engine + API + gateway, HTTP and gRPC on their own listeners.
pub fn embedded(cfg: GatewayConfig) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open_engine(dir.path());
    let http = kassa_api::http_router(engine.clone(), kassa_api::ApiConfig::default());
    let grpc = kassa_api::grpc_router(engine.clone());
    let front = kassa_gateway::embedded(http, grpc, engine.clone(), &cfg).expect("gateway builds");
    let http = serve(front.http.clone());
    let grpc = serve(front.grpc.clone());
    Node { engine, front, http, grpc, _dir: dir }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

pub async fn login(c: &reqwest::Client, node: &Node, user: &str, password: &str) -> String {
    let r = c.post(node.url("/auth/login")).json(&serde_json::json!({"username": user, "password": password})).send().await.unwrap();
    assert_eq!(r.status(), 200, "login {user}");
    let body: serde_json::Value = r.json().await.unwrap();
    body["token"].as_str().expect("token").to_string()
}

pub async fn register(c: &reqwest::Client, node: &Node, user: &str, password: &str) -> String {
    let r = c.post(node.url("/auth/register")).json(&serde_json::json!({"username": user, "password": password})).send().await.unwrap();
    assert_eq!(r.status(), 201, "register {user}");
    login(c, node, user, password).await
}

/// One parsed sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Checks Prometheus/OpenMetrics text line by line; returns (name, labels, value) samples.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE ") || rest.starts_with("UNIT ") || rest == "EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "label value must be quoted: {line}");
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => value.push(chars.next().expect("escape")),
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => panic!("unterminated label: {line}"),
                        }
                    }
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.is_empty(), "bad label name {key}");
                    labels.push((key, value));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name {name}");
        samples.push((name, labels, value));
    }
    samples
}

pub fn sample(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| n == name && want.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, v)| *v)
}
