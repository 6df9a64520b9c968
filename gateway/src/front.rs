//! Assembly: the shared state, the layer stack (one code path for both modes), and the two fronts.
//!
//! Layer order, outermost first: panic guard → request id + trace context → metrics and the access log
//! → security headers → CORS (answers preflights before anything else) → body limit → deadline →
//! authenticate (who) → rate limit (keyed on who) → authorize (route policy, `Actor` for the API).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use kassa_engine::Engine;
use prometheus_client::registry::Registry;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;

use crate::GatewayError;
use crate::auth::TokenKeys;
use crate::config::GatewayConfig;
use crate::metrics::{EngineCollector, LimiterCollector, Metrics, UpstreamCollector};
use crate::ratelimit::Limiters;
use crate::upstream::Pool;
use crate::users::UserStore;
use crate::{auth, edge, health, metrics, ratelimit, users};

/// State every layer and gateway route shares (one per process, across all cores).
pub struct Shared {
    pub cfg: GatewayConfig,
    pub tokens: Option<TokenKeys>,
    pub users: Option<Arc<UserStore>>,
    pub limiters: Arc<Limiters>,
    pub metrics: Metrics,
    pub registry: Registry,
    pub engine: Option<Engine>,
    pub pool: Option<Arc<Pool>>,
    pub started: Instant,
}

/// The wrapped routers a listener serves.
#[derive(Clone)]
pub struct Front {
    pub http: Router,
    pub grpc: Router,
    pub shared: Arc<Shared>,
}

fn build_shared(
    cfg: &GatewayConfig,
    data_dir: PathBuf,
    engine: Option<Engine>,
    pool: Option<Arc<Pool>>,
) -> Result<Arc<Shared>, GatewayError> {
    cfg.validate()?;
    let (tokens, users) = if cfg.auth.enabled && cfg.layers_enabled {
        let tokens = TokenKeys::from_config(cfg, &data_dir)?;
        let users = UserStore::open(&data_dir, cfg.auth.password_min_len)?;
        if let Some(password) = &cfg.auth.admin_password {
            users
                .bootstrap_admin(&cfg.auth.admin_user, password)
                .map_err(|e| GatewayError::Users(format!("bootstrap admin: {e}")))?;
        }
        (Some(tokens), Some(Arc::new(users)))
    } else {
        (None, None)
    };
    let limiters = Arc::new(Limiters::new(&cfg.rate_limit));
    let metrics = Metrics::new();
    let mut registry = metrics.registry();
    registry.register_collector(Box::new(LimiterCollector(limiters.clone())));
    if let Some(engine) = &engine {
        registry.register_collector(Box::new(EngineCollector(engine.clone())));
    }
    if let Some(pool) = &pool {
        registry.register_collector(Box::new(UpstreamCollector(pool.clone())));
    }
    Ok(Arc::new(Shared {
        cfg: cfg.clone(),
        tokens,
        users,
        limiters,
        metrics,
        registry,
        engine,
        pool,
        started: Instant::now(),
    }))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> http::Response<axum::body::Body> {
    tracing::error!("a handler panicked");
    use axum::response::IntoResponse;
    crate::respond::error(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
    )
    .into_response()
}

/// Wraps a router in the gateway's layers (applied per route, so `MatchedPath` is known to metrics).
pub fn wrap(router: Router, shared: &Arc<Shared>, cors: &Option<CorsLayer>) -> Router {
    let cfg = &shared.cfg;
    if !cfg.layers_enabled {
        return router;
    }
    let mut r = router;
    if cfg.auth.enabled {
        r = r.layer(from_fn_with_state(shared.clone(), auth::authorize));
    }
    if cfg.rate_limit.enabled {
        r = r.layer(from_fn_with_state(shared.clone(), ratelimit::limit));
    }
    if cfg.auth.enabled {
        r = r.layer(from_fn_with_state(shared.clone(), auth::authenticate));
    }
    r = r.layer(from_fn_with_state(shared.clone(), edge::deadline));
    r = r.layer(from_fn_with_state(shared.clone(), edge::body_limit));
    if let Some(cors) = cors {
        r = r.layer(cors.clone());
    }
    r = r.layer(from_fn_with_state(shared.clone(), edge::security_headers));
    r = r.layer(from_fn_with_state(shared.clone(), metrics::observe));
    r = r.layer(from_fn(edge::request_context));
    r.layer(CatchPanicLayer::custom(panic_response))
}

/// The gateway's own routes (health, metrics, admin, users), wrapped.
fn own_routes(shared: &Arc<Shared>) -> Router {
    let mut r = health::routes(shared.clone());
    if shared.users.is_some() {
        r = r.merge(users::routes(shared.clone()));
    }
    r
}

/// Embedded mode: the gateway's layers around the in-process API routers (no extra hop). The gateway's
/// own routes take precedence; everything else goes to the API router.
pub fn embedded(
    http: Router,
    grpc: Router,
    engine: Engine,
    cfg: &GatewayConfig,
) -> Result<Front, GatewayError> {
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| engine.config().data_dir.clone());
    let shared = build_shared(cfg, data_dir, Some(engine), None)?;
    let cors = edge::cors_layer(&cfg.cors)?;
    let http =
        wrap(own_routes(&shared), &shared, &cors).fallback_service(wrap(http, &shared, &cors));
    let grpc = wrap(grpc, &shared, &cors);
    Ok(Front { http, grpc, shared })
}

/// Standalone mode: the same layers in front of remote Kassa nodes (`cfg.upstreams`). Starts the
/// active health checker. The gRPC router proxies over HTTP/2 to each node's gRPC address.
pub fn standalone(cfg: &GatewayConfig) -> Result<Front, GatewayError> {
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("data"));
    let pool = Arc::new(Pool::new(cfg)?);
    pool.start_health_checks(&cfg.health_check)?;
    let shared = build_shared(cfg, data_dir, None, Some(pool))?;
    let cors = edge::cors_layer(&cfg.cors)?;
    let proxy = Router::new()
        .fallback(crate::upstream::proxy)
        .with_state(shared.clone());
    let http = wrap(own_routes(&shared), &shared, &cors).fallback_service(wrap(
        proxy.clone(),
        &shared,
        &cors,
    ));
    let grpc = wrap(proxy, &shared, &cors);
    Ok(Front { http, grpc, shared })
}
