//! What the gateway's layers cost: the same engine and API served bare (`layers_enabled = false`) and
//! behind every layer (auth on with a token, rate limits, CORS, headers, metrics, logs), over loopback.
//!
//! `cargo run --release -p kassa-gateway --example overhead -- [seconds] [connections]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_engine::{Engine, EngineConfig};
use kassa_gateway::{GatewayConfig, Listeners, Role, RouterFactory};

struct Run {
    requests: u64,
    p50_us: u64,
    p99_us: u64,
}

async fn load(url: String, token: Option<String>, seconds: u64, connections: usize) -> Run {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut latencies_us = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let started = Instant::now();
                let mut req = client.get(&url);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let Ok(r) = req.send().await else { continue };
                let ok = !r.status().is_server_error() && r.status() != 429 && r.status() != 401;
                let _ = r.bytes().await;
                if ok {
                    latencies_us.push(started.elapsed().as_micros() as u64);
                }
            }
            latencies_us
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pick = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    Run { requests: all.len() as u64, p50_us: pick(0.5), p99_us: pick(0.99) }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let connections: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine_cfg = EngineConfig::new(dir.path());
    engine_cfg.shards = 1;
    engine_cfg.pin_threads = false;
    let engine = Engine::open(engine_cfg).expect("engine");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut cfg = GatewayConfig::default();
    cfg.auth.jwt_secret = Some("overhead-measurement-secret".into());
    cfg.rate_limit.max_clients = 1000;
    for class in [&mut cfg.rate_limit.api, &mut cfg.rate_limit.default] {
        class.limit = u32::MAX / 2;
        class.burst = u32::MAX / 2;
    }
    let token = kassa_gateway::issue_token(&cfg, Role::User, "bench").expect("token");
    // `OVERHEAD_ONLY=gateway` (or `bare`) runs one side, e.g. under a profiler.
    let only = std::env::var("OVERHEAD_ONLY").ok();
    for (name, layers) in [("bare", false), ("gateway", true)] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut cfg = cfg.clone();
        cfg.layers_enabled = layers;
        let front = kassa_gateway::embedded(
            kassa_api::http_router(engine.clone(), kassa_api::ApiConfig::default()),
            kassa_api::grpc_router(engine.clone()),
            engine.clone(),
            &cfg,
        )
        .expect("front");
        let router = front.http.clone();
        let factory: RouterFactory = Arc::new(move || router.clone());
        let listeners = Listeners::start(SocketAddr::from(([127, 0, 0, 1], 0)), 1, factory).expect("listen");
        // A route that needs a token (auth, ownership check, rate limit keyed on the user).
        let url = format!("http://{}/api/baskets/bench", listeners.local_addr());
        let run = runtime.block_on(load(url, Some(token.clone()), seconds, connections));
        println!(
            "{name:8} {:>9.0} req/s  p50 {:>5} µs  p99 {:>6} µs  ({connections} connections, {seconds} s, 1 listener core)",
            run.requests as f64 / seconds as f64,
            run.p50_us,
            run.p99_us
        );
        listeners.shutdown(Duration::from_secs(1));
    }
    engine.shutdown();
}
