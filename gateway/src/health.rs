//! `/health*`, `/metrics` and `/admin/*`: what the gateway answers itself.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::front::Shared;
use crate::respond::error;

pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// RFC 3339 UTC with six digits of fraction, from microseconds since the epoch (0 → the Go zero time the
/// old gateway printed for "never").
pub fn rfc3339(micros: i64) -> String {
    if micros <= 0 { kassa_engine::time::GO_ZERO_TIME.to_string() } else { kassa_engine::time::rfc3339_micros(micros) }
}

fn now() -> String {
    rfc3339(now_micros())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy", "timestamp": now(), "version": env!("CARGO_PKG_VERSION")}))
}

async fn live() -> Json<Value> {
    Json(json!({"status": "alive", "timestamp": now()}))
}

/// Embedded: ready while the engine accepts writes and every shard runs. Standalone: while at least one
/// upstream is usable.
fn readiness(shared: &Shared) -> (bool, Value) {
    if let Some(engine) = &shared.engine {
        let ready = engine.is_ready();
        return (ready, json!({"engine": {"healthy": ready, "shards": engine.shards()}}));
    }
    if let Some(pool) = &shared.pool {
        let healthy = pool.healthy_count();
        return (
            healthy > 0,
            json!({"upstreams": {"healthy": healthy > 0, "healthy_backends": healthy, "total_backends": pool.nodes().len()}}),
        );
    }
    (false, json!({}))
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let (ok, _) = readiness(&shared);
    if ok {
        Json(json!({"status": "ready", "timestamp": now()})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "timestamp": now()}))).into_response()
    }
}

async fn detailed(State(shared): State<Arc<Shared>>) -> Response {
    let started = Instant::now();
    let (ok, mut checks) = readiness(&shared);
    if let Some(engine) = &shared.engine {
        checks["engine"]["checkpoint_age_seconds"] = json!(engine.checkpoint_age().as_secs_f64());
    }
    checks["gateway"] = json!({"healthy": true, "error": "", "duration": format!("{}µs", started.elapsed().as_micros()), "uptime_seconds": shared.started.elapsed().as_secs()});
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"checks": checks, "healthy": ok, "timestamp": now()}))).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    crate::metrics::render(&shared.registry)
}

/// Service keys of the old gateway; in Kassa every node serves all of them, so they name one pool.
const SERVICES: [&str; 5] = ["kassa", "product", "basket", "payment", "notification"];

fn backends(shared: &Shared) -> Value {
    match (&shared.pool, &shared.engine) {
        (Some(pool), _) => json!(pool.nodes().iter().map(|n| n.stats()).collect::<Vec<_>>()),
        (None, Some(engine)) => json!([{
            "active_connections": shared.metrics.active_requests.get(),
            "failed_requests": 0,
            "healthy": engine.is_open(),
            "last_health_check": now(),
            "total_requests": 0,
            "url": "in-process",
            "weight": 1,
        }]),
        (None, None) => json!([]),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let (healthy, total) = match (&shared.pool, &shared.engine) {
        (Some(pool), _) => (pool.healthy_count(), pool.nodes().len()),
        (None, Some(engine)) => (usize::from(engine.is_open()), 1),
        (None, None) => (0, 0),
    };
    let service_status = if healthy == 0 {
        "unhealthy"
    } else if healthy < total {
        "degraded"
    } else {
        "healthy"
    };
    let entry = json!({"healthy_backends": healthy, "status": service_status, "total_backends": total});
    let services: serde_json::Map<String, Value> = SERVICES[1..].iter().map(|s| (s.to_string(), entry.clone())).collect();
    let mode = if shared.pool.is_some() { "standalone" } else { "embedded" };
    Json(json!({"mode": mode, "services": services, "status": service_status, "timestamp": now()}))
}

async fn services(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"kassa": backends(&shared)}))
}

async fn loadbalancer(State(shared): State<Arc<Shared>>, Path(service): Path<String>) -> Response {
    if !SERVICES.contains(&service.as_str()) {
        return error(StatusCode::NOT_FOUND, "Service not found");
    }
    let strategy = shared.pool.as_ref().map_or("in-process", |p| p.strategy().name());
    Json(json!({"strategy": strategy, "backends": backends(&shared)})).into_response()
}

async fn circuitbreaker(State(shared): State<Arc<Shared>>, Path(service): Path<String>) -> Response {
    let Some(pool) = shared.pool.as_ref().filter(|_| SERVICES.contains(&service.as_str()) && shared.cfg.breaker.enabled) else {
        return error(StatusCode::NOT_FOUND, "Circuit breaker not found");
    };
    let views: Vec<_> = pool.nodes().iter().map(|n| (n.http.to_string(), n.breaker_view())).collect();
    // One answer for the service: open only if every node is open, closed only if every node is closed.
    let state = if views.iter().all(|(_, (s, _))| s.as_str() == "open") {
        "open"
    } else if views.iter().all(|(_, (s, _))| s.as_str() == "closed") {
        "closed"
    } else {
        "half-open"
    };
    let backends: Vec<Value> =
        views.into_iter().map(|(url, (s, counts))| json!({"url": url, "state": s.as_str(), "stats": counts})).collect();
    Json(json!({"state": state, "backends": backends})).into_response()
}

async fn rate_limit_status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let classes: serde_json::Map<String, Value> = shared
        .limiters
        .iter()
        .iter()
        .map(|(name, l)| {
            let c = l.class();
            (name.to_string(), json!({"limit": c.limit, "window_ms": c.window_ms, "burst": c.burst, "clients": l.len(), "capacity": l.capacity(), "evictions": l.evictions()}))
        })
        .collect();
    Json(json!({"enabled": shared.cfg.rate_limit.enabled, "classes": classes}))
}

/// `with_root_health`: also answer `/health` itself (standalone). Embedded, the API's `/health` (the old
/// services' shape) answers it.
pub fn routes(shared: Arc<Shared>, with_root_health: bool) -> Router {
    let mut r = Router::new();
    if with_root_health {
        r = r.route("/health", get(health)).route("/health/", get(health));
    }
    r.route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(metrics))
        .route("/admin/health", get(detailed))
        .route("/admin/status", get(status))
        .route("/admin/services", get(services))
        .route("/admin/loadbalancer/{service}", get(loadbalancer))
        .route("/admin/circuitbreaker/{service}", get(circuitbreaker))
        .route("/admin/rate-limit/status", get(rate_limit_status))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "0001-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(super::rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
