//! Standalone mode: the upstream Kassa nodes, how one is chosen (round robin, least connections,
//! weighted round robin; writes always to the primary), their breakers, active health checks, and the
//! proxy itself (HTTP/1.1 and gRPC over h2c) with retries of idempotent requests under a budget.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::Serialize;

use crate::GatewayError;
use crate::breaker::{Breaker, BreakerState, Counts};
use crate::config::{GatewayConfig, HealthCheckConfig, RetryConfig, Strategy, UpstreamConfig};
use crate::front::Shared;
use crate::respond;

/// One upstream node and everything known about it.
pub struct Node {
    pub index: usize,
    pub http: Uri,
    pub grpc: Uri,
    pub weight: u32,
    pub primary: bool,
    healthy: AtomicBool,
    probe_failures: AtomicU32,
    probe_successes: AtomicU32,
    last_check_micros: AtomicI64,
    active: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
    pub breaker: Breaker,
}

/// The old gateway's `BackendStats` (alphabetical), plus the breaker state.
#[derive(Serialize)]
pub struct BackendStats {
    pub active_connections: u64,
    pub breaker: &'static str,
    pub failed_requests: u64,
    pub healthy: bool,
    pub last_health_check: String,
    pub primary: bool,
    pub total_requests: u64,
    pub url: String,
    pub weight: u32,
}

impl Node {
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> BackendStats {
        BackendStats {
            active_connections: self.active(),
            breaker: self.breaker.state().as_str(),
            failed_requests: self.failed.load(Ordering::Relaxed),
            healthy: self.healthy(),
            last_health_check: crate::health::rfc3339(self.last_check_micros.load(Ordering::Relaxed)),
            primary: self.primary,
            total_requests: self.total(),
            url: self.http.to_string(),
            weight: self.weight,
        }
    }

    pub fn breaker_view(&self) -> (BreakerState, Counts) {
        (self.breaker.state(), self.breaker.counts())
    }

    fn usable(&self) -> bool {
        self.healthy() && self.breaker.available()
    }

    fn probe(&self, ok: bool, cfg: &HealthCheckConfig) {
        self.last_check_micros.store(crate::health::now_micros(), Ordering::Relaxed);
        if ok {
            self.probe_failures.store(0, Ordering::Relaxed);
            let n = self.probe_successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= cfg.healthy_threshold && !self.healthy.swap(true, Ordering::AcqRel) {
                tracing::info!(upstream = %self.http, "upstream healthy again");
            }
        } else {
            self.probe_successes.store(0, Ordering::Relaxed);
            let n = self.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= cfg.unhealthy_threshold && self.healthy.swap(false, Ordering::AcqRel) {
                tracing::warn!(upstream = %self.http, "upstream failed its health checks");
            }
        }
    }
}

/// Retries may add at most `ratio` of the current second's requests (but always `min_per_sec`), so a
/// struggling cluster is not buried under its own retries.
struct RetryBudget {
    cfg: RetryConfig,
    window: Mutex<(Instant, u32, u32)>,
}

impl RetryBudget {
    fn note_request(&self) {
        let mut w = self.window.lock();
        self.roll(&mut w);
        w.1 = w.1.saturating_add(1);
    }

    fn try_retry(&self) -> bool {
        let mut w = self.window.lock();
        self.roll(&mut w);
        let allowed = (self.cfg.budget_ratio * f64::from(w.1)) as u32;
        if w.2 < allowed.max(self.cfg.budget_min_per_sec) {
            w.2 += 1;
            true
        } else {
            false
        }
    }

    fn roll(&self, w: &mut (Instant, u32, u32)) {
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0, 0);
        }
    }
}

pub struct Pool {
    nodes: Vec<Arc<Node>>,
    primary: usize,
    strategy: Strategy,
    counter: AtomicU64,
    http: Client<HttpConnector, Body>,
    grpc: Client<HttpConnector, Body>,
    retry: RetryConfig,
    budget: RetryBudget,
    body_limit_bytes: usize,
    retries_total: AtomicU64,
}

fn base_uri(text: &str) -> Result<Uri, GatewayError> {
    let uri: Uri = text.parse().map_err(|e| GatewayError::Config(format!("upstream {text}: {e}")))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err(GatewayError::Config(format!("upstream {text}: need http://host:port (TLS to upstreams is not supported)"))),
    }
}

fn connector(connect_ms: u64) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_millis(connect_ms)));
    c
}

impl Pool {
    pub fn new(cfg: &GatewayConfig) -> Result<Pool, GatewayError> {
        if cfg.upstreams.is_empty() {
            return Err(GatewayError::Config("standalone mode needs at least one upstream".into()));
        }
        let nodes = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(index, u): (usize, &UpstreamConfig)| {
                let http = base_uri(&u.http)?;
                let grpc = match &u.grpc {
                    Some(g) => base_uri(g)?,
                    None => http.clone(),
                };
                Ok(Arc::new(Node {
                    index,
                    http,
                    grpc,
                    weight: u.weight,
                    primary: u.primary,
                    healthy: AtomicBool::new(true),
                    probe_failures: AtomicU32::new(0),
                    probe_successes: AtomicU32::new(0),
                    last_check_micros: AtomicI64::new(0),
                    active: AtomicU64::new(0),
                    total: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    breaker: Breaker::new(cfg.breaker.clone()),
                }))
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let primary = nodes.iter().position(|n| n.primary).unwrap_or(0);
        let connect_ms = cfg.timeouts.upstream_connect_ms;
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector(connect_ms));
        let grpc = Client::builder(TokioExecutor::new()).http2_only(true).build(connector(connect_ms));
        Ok(Pool {
            nodes,
            primary,
            strategy: cfg.strategy,
            counter: AtomicU64::new(0),
            http,
            grpc,
            retry: cfg.retry.clone(),
            budget: RetryBudget { cfg: cfg.retry.clone(), window: Mutex::new((Instant::now(), 0, 0)) },
            body_limit_bytes: cfg.body_limit_bytes,
            retries_total: AtomicU64::new(0),
        })
    }

    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn healthy_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.healthy() && n.breaker.state() != BreakerState::Open).count()
    }

    pub fn retries_total(&self) -> u64 {
        self.retries_total.load(Ordering::Relaxed)
    }

    /// The node for the next request. Writes go to the primary only (a replica refuses them); reads
    /// to a usable node chosen by the strategy, skipping `tried`.
    pub fn pick(&self, write: bool, tried: &[usize]) -> Option<Arc<Node>> {
        if write {
            let p = &self.nodes[self.primary];
            return (p.breaker.available() && !tried.contains(&p.index)).then(|| p.clone());
        }
        let usable: Vec<&Arc<Node>> = self.nodes.iter().filter(|n| n.usable() && !tried.contains(&n.index)).collect();
        if usable.is_empty() {
            return None;
        }
        let chosen = match self.strategy {
            Strategy::RoundRobin => {
                // Counter read before increment: the first request goes to the first node.
                let n = self.counter.fetch_add(1, Ordering::Relaxed) as usize;
                usable[n % usable.len()]
            }
            Strategy::LeastConnections => usable.iter().min_by_key(|n| (n.active(), n.index)).copied()?,
            Strategy::WeightedRoundRobin => {
                let total: u64 = usable.iter().map(|n| u64::from(n.weight)).sum();
                let mut slot = self.counter.fetch_add(1, Ordering::Relaxed) % total.max(1);
                let mut chosen = usable[0];
                for n in &usable {
                    if slot < u64::from(n.weight) {
                        chosen = n;
                        break;
                    }
                    slot -= u64::from(n.weight);
                }
                chosen
            }
        };
        Some(chosen.clone())
    }

    /// Starts the active health checker on its own thread; it stops when the pool is dropped.
    pub fn start_health_checks(self: &Arc<Self>, cfg: &HealthCheckConfig) -> Result<(), GatewayError> {
        if !cfg.enabled {
            return Ok(());
        }
        let weak: Weak<Pool> = Arc::downgrade(self);
        let cfg = cfg.clone();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| GatewayError::Io("health runtime".into(), e))?;
        std::thread::Builder::new()
            .name("kassa-health".into())
            .spawn(move || runtime.block_on(health_loop(weak, cfg)))
            .map_err(|e| GatewayError::Io("health thread".into(), e))?;
        Ok(())
    }
}

async fn health_loop(pool: Weak<Pool>, cfg: HealthCheckConfig) {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(connector(cfg.timeout_ms));
    let interval = Duration::from_millis(cfg.interval_ms.max(10));
    loop {
        let Some(nodes) = pool.upgrade().map(|p| p.nodes.clone()) else {
            return;
        };
        let probes = nodes.iter().map(|node| {
            let client = client.clone();
            let cfg = &cfg;
            async move {
                let uri = format!("{}{}", node.http.to_string().trim_end_matches('/'), cfg.path);
                let ok = match Uri::try_from(uri) {
                    Ok(uri) => {
                        let req = http::Request::get(uri).body(Body::empty());
                        match req {
                            Ok(req) => matches!(
                                tokio::time::timeout(Duration::from_millis(cfg.timeout_ms), client.request(req)).await,
                                Ok(Ok(r)) if r.status().is_success()
                            ),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                node.probe(ok, cfg);
            }
        });
        futures::future::join_all(probes).await;
        drop(nodes);
        tokio::time::sleep(interval).await;
    }
}

const HOP_BY_HOP: [&str; 8] =
    ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let listed: Vec<String> = from
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "host" || listed.iter().any(|l| l == n) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// gRPC methods that only read (safe on a replica).
fn grpc_is_read(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or("");
    ["Get", "List", "Check", "Watch", "HealthCheck", "ServerReflectionInfo"].iter().any(|p| method.starts_with(p))
}

fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS)
        || headers.contains_key("idempotency-key")
}

/// Decrements a node's in-flight count when the response body is done (or dropped).
struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn forwarded_request(
    node: &Node,
    grpc: bool,
    parts: &http::request::Parts,
    body: Body,
    peer: Option<SocketAddr>,
) -> Option<http::Request<Body>> {
    let base = if grpc { &node.grpc } else { &node.http };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder().scheme("http").authority(base.authority()?.clone()).path_and_query(path).build().ok()?;
    let mut req = http::Request::builder().method(parts.method.clone()).uri(uri).body(body).ok()?;
    copy_headers(&parts.headers, req.headers_mut());
    let h = req.headers_mut();
    if grpc {
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(peer) = peer {
        let chain = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    if let Some(host) = parts.headers.get(http::header::HOST) {
        h.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    h.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    Some(req)
}

fn is_failure(response: &http::Response<hyper::body::Incoming>) -> bool {
    let unavailable = response.headers().get("grpc-status").is_some_and(|v| v == "14");
    response.status().is_server_error() || unavailable
}

/// The proxy: every request the gateway does not answer itself goes to an upstream.
pub async fn proxy(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(pool) = shared.pool.clone() else {
        return respond::error(StatusCode::SERVICE_UNAVAILABLE, "Service not available");
    };
    let grpc = crate::auth::is_grpc(req.headers());
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let deadline = shared.cfg.timeouts.for_path(req.uri().path());
    let (parts, body) = req.into_parts();
    let write = if grpc { !grpc_is_read(parts.uri.path()) } else { !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) };
    pool.budget.note_request();
    if grpc {
        // Streams cannot be replayed: one attempt, body streamed through.
        let Some(node) = pool.pick(write, &[]) else {
            return respond::grpc_error(StatusCode::SERVICE_UNAVAILABLE, "No healthy backends available");
        };
        return match attempt(&pool, &node, true, &parts, body, peer, deadline).await {
            Ok(response) => response,
            Err((status, message)) => respond::grpc_error(status, message),
        };
    }
    // HTTP bodies are buffered (bounded by the body limit) so an idempotent request can be replayed.
    let bytes: Bytes = match http_body_util::Limited::new(body, pool.body_limit_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond::error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let retryable = is_idempotent(&parts.method, &parts.headers);
    let attempts_max = if retryable { pool.retry.attempts.max(1) } else { 1 };
    let mut tried: Vec<usize> = Vec::with_capacity(attempts_max as usize);
    let mut last_error: Option<Response> = None;
    for n in 0..attempts_max {
        if n > 0 {
            if !pool.budget.try_retry() {
                break;
            }
            pool.retries_total.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(pool.retry.backoff_ms.saturating_mul(1 << (n - 1).min(4)))).await;
        }
        // A write retried on connect errors goes to the primary again; reads move to another node.
        let exclude: &[usize] = if write { &[] } else { &tried };
        let Some(node) = pool.pick(write, exclude).or_else(|| if write { None } else { pool.pick(false, &[]) }) else {
            break;
        };
        tried.push(node.index);
        match attempt(&pool, &node, false, &parts, Body::from(bytes.clone()), peer, deadline).await {
            Ok(response) if response.status().is_server_error() && n + 1 < attempts_max => last_error = Some(response),
            Ok(response) => return response,
            Err((status, message)) => last_error = Some(respond::error(status, message)),
        }
    }
    last_error.unwrap_or_else(|| respond::error(StatusCode::SERVICE_UNAVAILABLE, "No healthy backends available"))
}

/// One try against one node: breaker admission, the call under the deadline, the outcome recorded.
async fn attempt(
    pool: &Pool,
    node: &Arc<Node>,
    grpc: bool,
    parts: &http::request::Parts,
    body: Body,
    peer: Option<SocketAddr>,
    deadline: Duration,
) -> Result<Response, (StatusCode, &'static str)> {
    if !node.breaker.try_acquire() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "Service temporarily unavailable"));
    }
    let Some(request) = forwarded_request(node, grpc, parts, body, peer) else {
        node.breaker.record(true);
        return Err((StatusCode::BAD_REQUEST, "request path cannot be forwarded"));
    };
    node.total.fetch_add(1, Ordering::Relaxed);
    node.active.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(node.clone());
    let client = if grpc { &pool.grpc } else { &pool.http };
    let outcome = tokio::time::timeout(deadline, client.request(request)).await;
    match outcome {
        Ok(Ok(response)) => {
            let failed = is_failure(&response);
            node.breaker.record(!failed);
            if failed {
                node.failed.fetch_add(1, Ordering::Relaxed);
            }
            let (parts, body) = response.into_parts();
            let mut out = Response::from_parts(parts, Body::empty());
            let mut headers = HeaderMap::new();
            copy_headers(out.headers(), &mut headers);
            *out.headers_mut() = headers;
            let mut guard = Some(guard);
            let body = body.map_frame(move |frame| {
                if frame.is_trailers() {
                    guard.take();
                }
                frame
            });
            *out.body_mut() = Body::new(body);
            Ok(out.into_response())
        }
        Ok(Err(e)) => {
            node.breaker.record(false);
            node.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(upstream = %node.http, error = %e, "upstream request failed");
            Err((StatusCode::BAD_GATEWAY, "Backend service unavailable"))
        }
        Err(_) => {
            node.breaker.record(false);
            node.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(upstream = %node.http, "upstream timed out");
            Err((StatusCode::GATEWAY_TIMEOUT, "Backend service timed out"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
        let upstreams = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| UpstreamConfig { http: format!("http://127.0.0.1:{}", 1000 + i), grpc: None, weight, primary: false })
            .collect();
        Pool::new(&GatewayConfig { upstreams, strategy, ..GatewayConfig::default() }).unwrap()
    }

    fn picks(p: &Pool, n: usize) -> Vec<usize> {
        (0..n).map(|_| p.pick(false, &[]).unwrap().index).collect()
    }

    #[tokio::test]
    async fn round_robin_starts_with_the_first_node() {
        let p = pool(Strategy::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&p, 5), [0, 1, 2, 0, 1]);
        assert_eq!(p.pick(true, &[]).unwrap().index, 0, "writes go to the primary");
    }

    #[tokio::test]
    async fn weighted_round_robin_follows_weights() {
        let p = pool(Strategy::WeightedRoundRobin, &[3, 1]);
        assert_eq!(picks(&p, 8), [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[tokio::test]
    async fn least_connections_prefers_idle_nodes() {
        let p = pool(Strategy::LeastConnections, &[1, 1]);
        p.nodes[0].active.store(3, Ordering::Relaxed);
        assert_eq!(picks(&p, 2), [1, 1]);
        p.nodes[1].active.store(5, Ordering::Relaxed);
        assert_eq!(picks(&p, 1), [0]);
    }

    #[tokio::test]
    async fn unhealthy_or_open_nodes_are_skipped() {
        let p = pool(Strategy::RoundRobin, &[1, 1]);
        let cfg = HealthCheckConfig { unhealthy_threshold: 1, ..HealthCheckConfig::default() };
        p.nodes[0].probe(false, &cfg);
        assert_eq!(picks(&p, 3), [1, 1, 1]);
        p.nodes[0].probe(true, &cfg);
        for _ in 0..3 {
            assert!(p.nodes[1].breaker.try_acquire());
            p.nodes[1].breaker.record(false);
        }
        assert_eq!(p.nodes[1].breaker.state(), BreakerState::Open);
        assert_eq!(picks(&p, 2), [0, 0]);
        assert_eq!(p.pick(false, &[0]).map(|n| n.index), None);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("keep-alive, x-secret"));
        from.insert("x-secret", HeaderValue::from_static("1"));
        from.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        from.insert("x-kept", HeaderValue::from_static("1"));
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key("x-kept"));
    }

    #[test]
    fn grpc_reads_and_idempotency() {
        assert!(grpc_is_read("/product.ProductService/GetProduct"));
        assert!(!grpc_is_read("/basket.BasketService/AddItem"));
        let mut h = HeaderMap::new();
        assert!(is_idempotent(&Method::PUT, &h));
        assert!(!is_idempotent(&Method::POST, &h));
        h.insert("idempotency-key", HeaderValue::from_static("k1"));
        assert!(is_idempotent(&Method::POST, &h));
    }
}
