//! Prometheus metrics: per-request counters and latencies labelled by route TEMPLATE (never the raw
//! path), gRPC calls by method and code, gateway decisions (rate limits, breakers, upstream health) and
//! the engine's own figures, read at scrape time.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use kassa_engine::Engine;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::access_log::AccessLog;
use crate::edge::RequestId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethod {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The gateway's live metrics (cheap to update from any core).
#[derive(Clone)]
pub struct Metrics {
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Histograms<RouteLabels>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_duration: Histograms<GrpcMethod>,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub active_requests: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            rate_limited: Family::default(),
            active_requests: Gauge::default(),
        }
    }

    /// A registry holding these metrics; the caller adds collectors (engine, upstreams, limiters).
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register("http_requests", "HTTP requests by method, route template and status", self.http_requests.clone());
        r.register("http_request_duration_seconds", "HTTP request latency by route template", self.http_duration.clone());
        r.register("grpc_requests", "gRPC calls by method and status code", self.grpc_requests.clone());
        r.register("grpc_request_duration_seconds", "gRPC call latency, to the final status", self.grpc_duration.clone());
        r.register("gateway_rate_limited", "Requests refused by the rate limiter, by limit class", self.rate_limited.clone());
        r.register("gateway_active_requests", "Requests in flight", self.active_requests.clone());
        r
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Renders a registry as Prometheus/OpenMetrics text.
pub fn render(registry: &Registry) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    response
}

/// The route label of a request that no route template matched (proxied, or not found): a fixed
/// service prefix, never the raw path.
pub fn fallback_endpoint(path: &str) -> &'static str {
    const GROUPS: [&str; 9] = [
        "/api/products",
        "/api/baskets",
        "/api/payments",
        "/api/notifications",
        "/api/v1/notifications",
        "/products",
        "/baskets",
        "/payments",
        "/auth",
    ];
    for group in GROUPS {
        if path == group || (path.starts_with(group) && path.as_bytes().get(group.len()) == Some(&b'/')) {
            return match group {
                "/api/products" => "/api/products/*",
                "/api/baskets" => "/api/baskets/*",
                "/api/payments" => "/api/payments/*",
                "/api/notifications" => "/api/notifications/*",
                "/api/v1/notifications" => "/api/v1/notifications/*",
                "/products" => "/products/*",
                "/baskets" => "/baskets/*",
                "/payments" => "/payments/*",
                _ => "/auth/*",
            };
        }
    }
    "unmatched"
}

fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// One request being observed: counted and timed when it finishes, and written to the access log (one
/// line: id, route, status, latency, user) when the log wants it.
pub struct Observation {
    started: Instant,
    method: http::Method,
    grpc: bool,
    /// The route template (`MatchedPath`), or a fixed fallback label; for gRPC the path.
    route: Route,
    request_id: Option<HeaderValue>,
    pub user: Option<String>,
}

/// A request's route label, kept borrowed until a label or log line needs it.
enum Route {
    Matched(MatchedPath),
    Fallback(&'static str),
    Grpc(http::Uri),
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Route::Matched(m) => m.as_str(),
            Route::Fallback(label) => label,
            Route::Grpc(uri) => uri.path(),
        }
    }
}

impl Observation {
    pub fn start(metrics: &Metrics, req: &Request, grpc: bool) -> Observation {
        metrics.active_requests.inc();
        let route = if grpc {
            Route::Grpc(req.uri().clone())
        } else {
            match req.extensions().get::<MatchedPath>() {
                Some(m) => Route::Matched(m.clone()),
                None => Route::Fallback(fallback_endpoint(req.uri().path())),
            }
        };
        Observation {
            started: Instant::now(),
            method: req.method().clone(),
            grpc,
            route,
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            user: None,
        }
    }

    pub fn finish(self, metrics: &Metrics, log: &AccessLog, response: Response) -> Response {
        metrics.active_requests.dec();
        let elapsed = self.started.elapsed();
        let status = response.status().as_u16();
        if let Some(sample) = log.wants(status, elapsed) {
            let request_id = self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
            let (route, user, latency_us) = (self.route.as_str(), self.user.as_deref().unwrap_or("-"), elapsed.as_micros() as u64);
            if self.grpc {
                tracing::info!(request_id, route, status, latency_us, user, sample, "grpc");
            } else {
                tracing::info!(request_id, route, status, latency_us, user, sample, "http");
            }
        }
        if self.grpc {
            return count_grpc(metrics.clone(), grpc_method_label(self.route.as_str()), self.started, response);
        }
        let labels = HttpLabels { method: self.method.as_str().to_string(), endpoint: self.route.as_str().to_string(), status };
        metrics.http_requests.get_or_create(&labels).inc();
        let route = RouteLabels { method: labels.method, endpoint: labels.endpoint };
        metrics.http_duration.get_or_create(&route).observe(elapsed.as_secs_f64());
        response
    }
}

/// Services Kassa serves; other paths would be unbounded label values and all get `unknown`.
const GRPC_SERVICES: [&str; 6] = [
    "product.ProductService",
    "basket.BasketService",
    "payment.PaymentService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn grpc_method_label(path: &str) -> String {
    let service = path.trim_start_matches('/').split_once('/').map_or("", |(service, _)| service);
    if GRPC_SERVICES.contains(&service) && path.len() <= 128 { path.to_string() } else { "unknown".to_string() }
}

/// gRPC carries its status in trailers (or, for immediate errors, in the headers): count and time the
/// call when the status is seen.
fn count_grpc(metrics: Metrics, method: String, started: Instant, response: Response) -> Response {
    let record = move |code: u16| {
        // UNIMPLEMENTED means the method does not exist: keep such names out of the labels.
        let method = if code == 12 { "unknown".to_string() } else { method.clone() };
        metrics.grpc_duration.get_or_create(&GrpcMethod { method: method.clone() }).observe(started.elapsed().as_secs_f64());
        metrics.grpc_requests.get_or_create(&GrpcLabels { method, code }).inc();
    };
    if let Some(code) = grpc_status(response.headers()) {
        record(code);
        return response;
    }
    let (parts, body) = response.into_parts();
    let mut record = Some(record);
    let body = body.map_frame(move |frame| {
        if let Some(trailers) = frame.trailers_ref()
            && let Some(record) = record.take()
        {
            record(grpc_status(trailers).unwrap_or(2));
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

pub(crate) fn encode_rows<M: EncodeMetric, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut rows = rows.into_iter().peekable();
    let Some((_, first)) = rows.peek() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in rows {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The engine's figures per shard, read from its atomics at scrape time.
pub struct EngineCollector(pub Engine);

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let shard = |i: usize| [("shard", i.to_string())];
        let counter = |name: &str, help: &str, get: fn(&kassa_engine::ShardFigures) -> u64, e: &mut DescriptorEncoder| {
            encode_rows(e, name, help, stats.shards.iter().enumerate().map(|(i, s)| (shard(i), ConstCounter::new(get(s)))))
        };
        counter("kassa_shard_commands", "Commands applied", |s| s.commands_total, &mut encoder)?;
        counter("kassa_shard_batches", "Group commits", |s| s.batches_total, &mut encoder)?;
        counter("kassa_shard_events", "Events journaled", |s| s.events_total, &mut encoder)?;
        counter("kassa_shard_overloaded", "Client commands refused with 503 overloaded", |s| s.overloaded_total, &mut encoder)?;
        counter(
            "kassa_shard_peer_dropped",
            "Messages to a full peer mailbox, dropped and re-driven",
            |s| s.peer_dropped_total,
            &mut encoder,
        )?;
        let gauge = |name: &str, help: &str, get: fn(&kassa_engine::ShardFigures) -> f64, e: &mut DescriptorEncoder| {
            encode_rows(e, name, help, stats.shards.iter().enumerate().map(|(i, s)| (shard(i), ConstGauge::new(get(s)))))
        };
        gauge(
            "kassa_shard_running",
            "1 while the shard's thread runs and takes commands",
            |s| f64::from(u8::from(s.running)),
            &mut encoder,
        )?;
        gauge("kassa_shard_batch_events_max", "Largest group commit (events)", |s| s.batch_events_max as f64, &mut encoder)?;
        gauge(
            "kassa_shard_sync_seconds_total",
            "Time spent making the journal durable",
            |s| s.sync_micros_total as f64 / 1e6,
            &mut encoder,
        )?;
        gauge("kassa_shard_sync_seconds_last", "Latency of the last journal sync", |s| s.sync_micros_last as f64 / 1e6, &mut encoder)?;
        gauge("kassa_shard_queue_depth", "Commands waiting in the shard's mailbox", |s| s.queue_depth as f64, &mut encoder)?;
        gauge(
            "kassa_shard_store_buffered_entries",
            "Store writes applied in memory, not yet moved into the stores",
            |s| s.store_buffered_entries as f64,
            &mut encoder,
        )?;
        gauge("kassa_shard_durable_lsn", "Last durable journal position", |s| s.durable_lsn as f64, &mut encoder)?;
        gauge("kassa_shard_checkpoint_lsn", "Journal position covered by the last checkpoint", |s| s.checkpoint_lsn as f64, &mut encoder)?;
        let no_labels: [(&str, String); 0] = [];
        encode_rows(
            &mut encoder,
            "kassa_checkpoint_age_seconds",
            "Age of the oldest shard checkpoint",
            [(no_labels.clone(), ConstGauge::new(self.0.checkpoint_age().as_secs_f64()))],
        )?;
        let (cursors, dropped) = self.0.feed_cursors();
        let pinned =
            cursors.iter().map(|c| ([("cursor", c.name.clone()), ("shard", c.shard.to_string())], ConstGauge::new(c.pinned_bytes as i64)));
        encode_rows(&mut encoder, "kassa_feed_cursor_pinned_bytes", "Journal kept only for this feed cursor", pinned)?;
        encode_rows(
            &mut encoder,
            "kassa_feed_cursors_dropped",
            "Feed cursors dropped by the retention cap (their consumers must re-copy)",
            [(no_labels.clone(), ConstCounter::new(dropped))],
        )?;
        encode_rows(
            &mut encoder,
            "kassa_engine_open",
            "1 while the engine accepts writes",
            [(no_labels, ConstGauge::new(i64::from(self.0.is_open())))],
        )
    }
}

/// Rate-limiter memory, read at scrape time.
pub struct LimiterCollector(pub Arc<crate::ratelimit::Limiters>);

impl std::fmt::Debug for LimiterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LimiterCollector")
    }
}

impl Collector for LimiterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let limiters = self.0.iter();
        let rows = limiters.iter().map(|(class, l)| ([("class", class.to_string())], ConstGauge::new(l.len() as i64)));
        encode_rows(&mut encoder, "gateway_rate_limit_clients", "Clients remembered by the rate limiter", rows)?;
        let rows = limiters.iter().map(|(class, l)| ([("class", class.to_string())], ConstCounter::new(l.evictions())));
        encode_rows(&mut encoder, "gateway_rate_limit_evictions", "Active clients dropped to keep memory bounded", rows)
    }
}

/// Upstream health, breaker states and traffic, read at scrape time.
pub struct UpstreamCollector(pub Arc<crate::upstream::Pool>);

impl std::fmt::Debug for UpstreamCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamCollector")
    }
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes = self.0.nodes();
        let label = |n: &crate::upstream::Node| [("upstream", n.http.to_string())];
        encode_rows(
            &mut encoder,
            "gateway_backend_health",
            "1 healthy, 0 unhealthy (active checks)",
            nodes.iter().map(|n| (label(n), ConstGauge::new(i64::from(n.healthy())))),
        )?;
        encode_rows(
            &mut encoder,
            "gateway_circuit_breaker_state",
            "0 closed, 1 open, 2 half-open",
            nodes.iter().map(|n| (label(n), ConstGauge::new(n.breaker.state().gauge()))),
        )?;
        encode_rows(
            &mut encoder,
            "gateway_circuit_breaker_opened",
            "Times the breaker opened",
            nodes.iter().map(|n| (label(n), ConstCounter::new(n.breaker.opened_total()))),
        )?;
        encode_rows(
            &mut encoder,
            "gateway_upstream_requests",
            "Requests sent to the upstream",
            nodes.iter().map(|n| (label(n), ConstCounter::new(n.total()))),
        )?;
        encode_rows(
            &mut encoder,
            "gateway_upstream_active",
            "Requests in flight to the upstream",
            nodes.iter().map(|n| (label(n), ConstGauge::new(n.active() as i64))),
        )?;
        let no_labels: [(&str, String); 0] = [];
        encode_rows(
            &mut encoder,
            "gateway_upstream_retries",
            "Retries of idempotent requests",
            [(no_labels, ConstCounter::new(self.0.retries_total()))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(grpc_method_label("/product.ProductService/GetProduct"), "/product.ProductService/GetProduct");
        assert_eq!(grpc_method_label("/evil.Service/x"), "unknown");
        assert_eq!(grpc_method_label("nonsense"), "unknown");
        assert_eq!(fallback_endpoint("/api/products/1/x/y"), "/api/products/*");
        assert_eq!(fallback_endpoint("/api/productsX"), "unmatched");
        assert_eq!(fallback_endpoint("/random/abc"), "unmatched");
    }
}
