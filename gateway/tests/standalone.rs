//! Standalone mode: the gateway in front of two in-process Kassa nodes (each an engine with the real API
//! behind an embedded gateway with auth off, as `kassa serve --auth off` runs), over real sockets.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use kassa_engine::Engine;
use kassa_gateway::config::{Strategy, UpstreamConfig};
use kassa_gateway::{Front, GatewayConfig, Listeners, Role};
use serde_json::{Value, json};

struct Upstream {
    _engine: Engine,
    front: Front,
    http: Option<Listeners>,
    http_addr: SocketAddr,
    grpc: Listeners,
    _dir: tempfile::TempDir,
}

impl Upstream {
    fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        let mut cfg = GatewayConfig::default();
        cfg.auth.enabled = false;
        cfg.rate_limit.enabled = false;
        let front = kassa_gateway::embedded(
            kassa_api::http_router(engine.clone(), kassa_api::ApiConfig::default()),
            kassa_api::grpc_router(engine.clone()),
            engine.clone(),
            &cfg,
        )
        .unwrap();
        let http = serve(front.http.clone());
        let grpc = serve(front.grpc.clone());
        Upstream { _engine: engine, front, http_addr: http.local_addr(), http: Some(http), grpc, _dir: dir }
    }

    fn kill(&mut self) {
        if let Some(l) = self.http.take() {
            l.shutdown(Duration::from_secs(2));
        }
    }

    /// Comes back on the same address (as a restarted process would).
    fn restart(&mut self) {
        let router = self.front.http.clone();
        let factory: kassa_gateway::RouterFactory = std::sync::Arc::new(move || router.clone());
        self.http = Some(Listeners::start(self.http_addr, 1, factory).unwrap());
    }

    fn config(&self) -> UpstreamConfig {
        UpstreamConfig {
            http: format!("http://{}", self.http_addr),
            grpc: Some(format!("http://{}", self.grpc.local_addr())),
            weight: 1,
            primary: false,
        }
    }
}

fn gateway(upstreams: &[&Upstream], tweak: impl FnOnce(&mut GatewayConfig)) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.data_dir = Some(dir.path().to_path_buf());
    cfg.upstreams = upstreams.iter().map(|u| u.config()).collect();
    cfg.strategy = Strategy::RoundRobin;
    // Long enough that the reads between a trip and the checks that B is out of rotation cannot outlast
    // it on a loaded machine; nothing waits for it by sleeping (the test waits for the state to change).
    cfg.breaker.timeout_ms = 2_000;
    cfg.breaker.max_requests = 2;
    cfg.health_check.enabled = false;
    tweak(&mut cfg);
    let front = kassa_gateway::standalone(&cfg).unwrap();
    let http = serve(front.http.clone());
    let grpc = serve(front.grpc.clone());
    // The gateway keeps no engine; Node wants one only for embedded tests, so reuse a throwaway.
    let engine_dir = tempfile::tempdir().unwrap();
    let engine = open_engine(engine_dir.path());
    (Node { engine, front, http, grpc, _dir: engine_dir }, dir)
}

fn admin_token(dir: &tempfile::TempDir) -> String {
    let mut cfg = config();
    cfg.data_dir = Some(dir.path().to_path_buf());
    kassa_gateway::issue_token(&cfg, Role::Admin, "ops").unwrap()
}

async fn breaker_of(c: &reqwest::Client, gw: &Node, token: &str, url: &str) -> String {
    let v: Value = c.get(gw.url("/admin/circuitbreaker/kassa")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let backend = v["backends"].as_array().unwrap().iter().find(|b| b["url"].as_str().unwrap().contains(url)).unwrap().clone();
    backend["state"].as_str().unwrap().to_string()
}

/// Polls `probe` every 20 ms until it yields a value. The minute is a guard against a state that never
/// comes, not a claim about how soon it comes.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    for _ in 0..3_000 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn requests_of(gw: &Node, i: usize) -> u64 {
    gw.front.shared.pool.as_ref().unwrap().nodes()[i].total()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_writes_go_to_the_primary_and_a_dead_node_is_routed_around() {
    let a = Upstream::start();
    let mut b = Upstream::start();
    let (gw, dir) = gateway(&[&a, &b], |_| {});
    let c = client();
    let token = admin_token(&dir);

    for _ in 0..10 {
        assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200);
    }
    assert_eq!((requests_of(&gw, 0), requests_of(&gw, 1)), (5, 5), "round robin over both nodes");
    let services: Value = c.get(gw.url("/admin/services")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(services["kassa"].as_array().unwrap().len(), 2);

    // Writes: the primary only, never the replica.
    let body = json!({"name": "Chair", "description": "", "price": 42.0, "stock": 3, "category": "home"});
    let r = c.post(gw.url("/api/products")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let direct = |u: &Upstream| format!("http://{}/api/products/{id}", u.http_addr);
    assert_eq!(c.get(direct(&a)).send().await.unwrap().status(), 200);
    assert_eq!(c.get(direct(&b)).send().await.unwrap().status(), 404);
    // The gateway's auth still applies in front of upstreams that run without it.
    assert_eq!(c.post(gw.url("/api/products")).json(&body).send().await.unwrap().status(), 401);

    // Kill B: idempotent reads keep succeeding (retried on A) and B's breaker opens.
    b.kill();
    for i in 0..20 {
        let r = c.get(gw.url("/api/products")).send().await.unwrap();
        assert_eq!(r.status(), 200, "read {i} failed while B was down");
    }
    let b_url = b.http_addr.to_string();
    assert_eq!(breaker_of(&c, &gw, &token, &b_url).await, "open");
    let before = requests_of(&gw, 1);
    for _ in 0..5 {
        assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200);
    }
    assert_eq!(requests_of(&gw, 1), before, "an open breaker takes B out of rotation");
    let text = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = parse_metrics(&text);
    assert_eq!(sample(&samples, "gateway_circuit_breaker_state", &[("upstream", &format!("http://{b_url}/"))]), Some(1.0), "{text}");
    assert!(sample(&samples, "gateway_upstream_retries_total", &[]).unwrap() >= 1.0);

    // Restart B: the open timeout leads to half-open (not straight to closed), and two good probes close it.
    b.restart();
    let next =
        eventually("B's breaker leaves open", || async { Some(breaker_of(&c, &gw, &token, &b_url).await).filter(|state| state != "open") })
            .await;
    assert_eq!(next, "half-open");
    // Round robin sends every other read to B, so its two probes are among the next four reads.
    for read in 0..4 {
        assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200, "read {read} while B is half-open");
    }
    assert_eq!(breaker_of(&c, &gw, &token, &b_url).await, "closed", "two good probes close the breaker");
    let before = requests_of(&gw, 1);
    for _ in 0..4 {
        assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200);
    }
    assert_eq!(requests_of(&gw, 1), before + 2, "B is back in rotation");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_not_retried_elsewhere_and_fail_cleanly_when_the_primary_is_down() {
    let mut a = Upstream::start();
    let b = Upstream::start();
    let (gw, dir) = gateway(&[&a, &b], |_| {});
    let c = client();
    let token = admin_token(&dir);
    a.kill();
    let body = json!({"name": "Chair", "description": "", "price": 42.0, "stock": 3, "category": "home"});
    let r = c.post(gw.url("/api/products")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "Backend service unavailable");
    assert_eq!(requests_of(&gw, 1), 0, "a write never goes to the replica");
    assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200, "reads still work");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_drive_readiness() {
    let mut a = Upstream::start();
    let mut b = Upstream::start();
    let (gw, _dir) = gateway(&[&a, &b], |cfg| {
        cfg.health_check.enabled = true;
        cfg.health_check.interval_ms = 50;
        cfg.health_check.timeout_ms = 200;
        cfg.health_check.unhealthy_threshold = 1;
        cfg.strategy = Strategy::LeastConnections;
    });
    let c = client();
    assert_eq!(c.get(gw.url("/health/ready")).send().await.unwrap().status(), 200);
    a.kill();
    b.kill();
    let ready = || async { c.get(gw.url("/health/ready")).send().await.unwrap().status().as_u16() };
    eventually("readiness turns 503 once both checks fail", || async { (ready().await == 503).then_some(()) }).await;
    let r = c.get(gw.url("/api/products")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "No healthy backends available");
    b.restart();
    eventually("readiness turns 200 once B's check passes", || async { (ready().await == 200).then_some(()) }).await;
    let before = requests_of(&gw, 1);
    assert_eq!(c.get(gw.url("/api/products")).send().await.unwrap().status(), 200);
    assert_eq!(requests_of(&gw, 1), before + 1, "the healthy node serves");
    assert_eq!(requests_of(&gw, 0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_is_proxied_over_http2_with_the_same_policy() {
    use kassa_api::pb::product::product_service_client::ProductServiceClient;
    use kassa_api::pb::product::{CreateProductRequest, ListProductsRequest};
    let a = Upstream::start();
    let b = Upstream::start();
    let (gw, dir) = gateway(&[&a, &b], |_| {});
    let token = admin_token(&dir);
    let mut grpc = ProductServiceClient::connect(gw.grpc_url()).await.unwrap();
    let create = CreateProductRequest { name: "Desk".into(), description: "".into(), price: 10.5, stock: 2, category: "office".into() };
    let err = grpc.create_product(create.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(create);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let created = grpc.create_product(req).await.unwrap().into_inner();
    assert_eq!(created.product.unwrap().name, "Desk");
    // The write went to the primary: listing there shows it.
    let mut on_a = ProductServiceClient::connect(format!("http://{}", a.grpc.local_addr())).await.unwrap();
    assert_eq!(on_a.list_products(ListProductsRequest {}).await.unwrap().into_inner().products.len(), 1);
    // Reads spread: one of two ListProducts lands on B (empty), one on A.
    let mut sizes = Vec::new();
    for _ in 0..2 {
        sizes.push(grpc.list_products(ListProductsRequest {}).await.unwrap().into_inner().products.len());
    }
    sizes.sort();
    assert_eq!(sizes, [0, 1]);
    drop(b);
}

/// A stand-in upstream whose answers the test controls: counts hits, can be slow or failing.
struct Fake {
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    listeners: Listeners,
}

fn fake(status: u16, delay_ms: u64) -> Fake {
    use std::sync::atomic::Ordering;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = hits.clone();
    let handler = move |req: axum::extract::Request| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let echo = req.headers().get("traceparent").cloned();
            let mut r = axum::response::IntoResponse::into_response((
                http::StatusCode::from_u16(status).unwrap(),
                axum::Json(json!({"seen_request_id": req.headers().get("x-request-id").and_then(|v| v.to_str().ok())})),
            ));
            if let Some(tp) = echo {
                r.headers_mut().insert("x-seen-traceparent", tp);
            }
            r
        }
    };
    let router = axum::Router::new().route("/health/ready", axum::routing::get(|| async { "ok" })).fallback(handler);
    Fake { hits, listeners: serve(router) }
}

impl Fake {
    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn upstream(&self) -> UpstreamConfig {
        UpstreamConfig { http: format!("http://{}", self.listeners.local_addr()), grpc: None, weight: 1, primary: false }
    }
}

fn fake_gateway(upstreams: &[&Fake], tweak: impl FnOnce(&mut GatewayConfig)) -> (Listeners, tempfile::TempDir, Front) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.auth.enabled = false;
    cfg.data_dir = Some(dir.path().to_path_buf());
    cfg.upstreams = upstreams.iter().map(|f| f.upstream()).collect();
    cfg.health_check.enabled = false;
    tweak(&mut cfg);
    let front = kassa_gateway::standalone(&cfg).unwrap();
    (serve(front.http.clone()), dir, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_and_headers_propagate() {
    let failing = fake(503, 0);
    let good = fake(200, 0);
    let (gw, _dir, _front) = fake_gateway(&[&failing, &good], |cfg| cfg.breaker.enabled = false);
    let c = client();
    let url = format!("http://{}/api/baskets/u1", gw.local_addr());
    // GET: the first try hits the failing node, the retry the good one.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c.get(&url).header("x-request-id", "rid-7").header("traceparent", parent).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = r.headers()["x-seen-traceparent"].to_str().unwrap().to_string();
    assert!(seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && seen != parent, "the upstream got a child span: {seen}");
    assert_eq!(r.json::<Value>().await.unwrap()["seen_request_id"], "rid-7");
    assert_eq!((failing.hits(), good.hits()), (1, 1));
    // POST without an Idempotency-Key: writes go to the primary (the failing node) and are not retried.
    let r = c.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!((failing.hits(), good.hits()), (2, 1));
    // With an Idempotency-Key a write may be retried (on the primary again: replicas refuse writes).
    let r = c.post(&url).header("idempotency-key", "k-1").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(failing.hits(), 5, "three tries of the idempotent write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstreams_hit_the_route_deadline() {
    let slow = fake(200, 2_000);
    let (gw, _dir, _front) = fake_gateway(&[&slow], |cfg| {
        cfg.timeouts.request_ms = 5_000;
        cfg.timeouts.routes.insert("/api/payments".into(), 200);
        cfg.retry.attempts = 1;
    });
    let c = client();
    // The upstream answers after 2 s, inside the 5 s request deadline: a 504 can only be the 200 ms one of
    // the route, and the same upstream answering another route proves that deadline is the route's own.
    let r = c.get(format!("http://{}/api/payments/p1", gw.local_addr())).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(slow.hits(), 1, "tried once, not retried");
    let r = c.get(format!("http://{}/api/products/1", gw.local_addr())).send().await.unwrap();
    assert_eq!(r.status(), 200, "another route keeps the request deadline");
    assert_eq!(slow.hits(), 2);
    let metrics = c.get(format!("http://{}/metrics", gw.local_addr())).send().await.unwrap().text().await.unwrap();
    let samples = parse_metrics(&metrics);
    assert_eq!(
        sample(&samples, "http_requests_total", &[("endpoint", "/api/payments/*"), ("status", "504")]),
        Some(1.0),
        "proxied routes are labelled by their service prefix: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_over_real_sockets() {
    let heavy = fake(200, 0);
    let light = fake(200, 0);
    let (gw, _dir, _front) = fake_gateway(&[&heavy, &light], |cfg| {
        cfg.strategy = Strategy::WeightedRoundRobin;
        cfg.upstreams[0].weight = 3;
    });
    let c = client();
    for _ in 0..8 {
        assert_eq!(c.get(format!("http://{}/api/products", gw.local_addr())).send().await.unwrap().status(), 200);
    }
    assert_eq!((heavy.hits(), light.hits()), (6, 2));
}
