//! Assembly: the shared state, the request pipeline (one code path for both modes), and the two fronts.
//!
//! Order, outermost first: panic guard → request id + trace context → metrics and the access log →
//! security headers → CORS (answers preflights before anything else) → body limit → identify (who) →
//! rate limit (keyed on who) → admit (route policy, `Actor` for the API) → deadline → the route.
//! The steps run in one middleware: each tower layer costs a service clone and a boxed future per
//! request, which measurably halved throughput when the steps were eight separate layers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use http::StatusCode;
use kassa_engine::Engine;
use prometheus_client::registry::Registry;
use tower_http::catch_panic::CatchPanicLayer;

use crate::GatewayError;
use crate::access_log::AccessLog;
use crate::auth::TokenKeys;
use crate::config::GatewayConfig;
use crate::cors::Cors;
use crate::metrics::Observation;
use crate::metrics::{EngineCollector, LimiterCollector, Metrics, UpstreamCollector};
use crate::ratelimit::Limiters;
use crate::upstream::Pool;
use crate::users::UserStore;
use crate::{auth, edge, health, ratelimit, respond, users};
use prometheus_client::collector::Collector;

/// State every layer and gateway route shares (one per process, across all cores).
pub struct Shared {
    pub cfg: GatewayConfig,
    pub tokens: Option<TokenKeys>,
    pub users: Option<Arc<UserStore>>,
    pub limiters: Arc<Limiters>,
    pub cors: Cors,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub registry: Registry,
    pub engine: Option<Engine>,
    pub adapters: Option<Arc<kassa_adapters::Adapters>>,
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
    adapters: Option<Arc<kassa_adapters::Adapters>>,
    pool: Option<Arc<Pool>>,
    collectors: Vec<Box<dyn Collector>>,
) -> Result<Arc<Shared>, GatewayError> {
    cfg.validate()?;
    let (tokens, users) = if cfg.auth.enabled && cfg.layers_enabled {
        let tokens = TokenKeys::from_config(cfg, &data_dir)?;
        let users = UserStore::open(&data_dir, cfg.auth.password_min_len)?;
        if let Some(password) = &cfg.auth.admin_password {
            users.bootstrap_admin(&cfg.auth.admin_user, password).map_err(|e| GatewayError::Users(format!("bootstrap admin: {e}")))?;
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
    if let Some(adapters) = &adapters {
        registry.register_collector(Box::new(crate::adapters::AdapterCollector(adapters.clone())));
    }
    for collector in collectors {
        registry.register_collector(collector);
    }
    let cors = Cors::new(&cfg.cors)?;
    Ok(Arc::new(Shared {
        cfg: cfg.clone(),
        tokens,
        users,
        limiters,
        cors,
        metrics,
        access_log: AccessLog::new(&cfg.access_log),
        registry,
        engine,
        adapters,
        pool,
        started: Instant::now(),
    }))
}

/// Every request's way through the gateway (see the module docs for the order).
pub async fn pipeline(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let cfg = &shared.cfg;
    let grpc = auth::is_grpc(req.headers());
    let stamp = edge::assign_ids(&mut req);
    let mut observation = Observation::start(&shared.metrics, &req, grpc);
    let mut response = if shared.cors.is_preflight(req.method(), req.headers()) {
        shared.cors.preflight(req.headers())
    } else {
        let origin = shared.cors.allowed_origin(req.headers());
        let mut response = match edge::oversized(&req, cfg.body_limit_bytes, grpc) {
            Some(refused) => refused,
            None => {
                let mut req = edge::limit_body(req, cfg.body_limit_bytes);
                if cfg.auth.enabled {
                    observation.user = auth::identify(&shared, &mut req).map(|p| p.subject);
                }
                let checked = cfg.rate_limit.enabled.then(|| ratelimit::check(&shared, &req));
                let mut response = match &checked {
                    Some(c) if !c.decision.allowed => {
                        let class = crate::metrics::ClassLabels { class: c.class.to_string() };
                        shared.metrics.rate_limited.get_or_create(&class).inc();
                        c.rejection(grpc)
                    }
                    _ => admitted(&shared, req, next, grpc).await,
                };
                // Room for every header the gateway adds, so the map grows once rather than two or three times.
                response.headers_mut().reserve(HEADERS_ADDED);
                if let Some(c) = &checked {
                    c.stamp(&mut response);
                }
                response
            }
        };
        shared.cors.decorate(origin, &mut response);
        response
    };
    edge::secure(&mut response, cfg.tls.is_some());
    stamp.apply(&mut response);
    observation.finish(&shared.metrics, &shared.access_log, response)
}

/// Ids, security headers, rate-limit headers and CORS: what the pipeline adds to a response at most.
const HEADERS_ADDED: usize = 16;

/// The route policy, then the route itself under its deadline (only the response head is bounded, so
/// gRPC streams are not cut).
async fn admitted(shared: &Shared, mut req: Request, next: Next, grpc: bool) -> Response {
    if shared.cfg.auth.enabled
        && let Some(refused) = auth::admit(shared, &mut req, grpc)
    {
        return refused;
    }
    let limit = shared.cfg.timeouts.for_path(req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => respond::error_for(grpc, StatusCode::GATEWAY_TIMEOUT, "request timed out"),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> http::Response<axum::body::Body> {
    tracing::error!("a handler panicked");
    respond::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// Wraps a router in the gateway (applied per route, so `MatchedPath` is known to metrics).
pub fn wrap(router: Router, shared: &Arc<Shared>) -> Router {
    if !shared.cfg.layers_enabled {
        return router;
    }
    router.layer(from_fn_with_state(shared.clone(), pipeline)).layer(CatchPanicLayer::custom(panic_response))
}

/// The gateway's own routes (health, metrics, admin, users), wrapped.
fn own_routes(shared: &Arc<Shared>) -> Router {
    let mut r = health::routes(shared.clone(), shared.engine.is_none());
    if shared.engine.is_some() {
        r = r.merge(crate::adapters::routes(shared.clone()));
        r = r.merge(crate::backup::routes(shared.clone()));
    }
    if shared.users.is_some() {
        r = r.merge(users::routes(shared.clone()));
    }
    r
}

/// Embedded mode: the gateway's layers around the in-process API routers (no extra hop). The gateway's
/// own routes take precedence; everything else goes to the API router.
pub fn embedded(http: Router, grpc: Router, engine: Engine, cfg: &GatewayConfig) -> Result<Front, GatewayError> {
    embedded_with(http, grpc, engine, None, Vec::new(), cfg)
}

/// [`embedded`] with the node's adapters, whose status, dead letters, verification and figures the
/// gateway serves (`/admin/adapters*`, `/metrics`), and the node's other figures for `/metrics`
/// (the payment providers').
pub fn embedded_with(
    http: Router,
    grpc: Router,
    engine: Engine,
    adapters: Option<Arc<kassa_adapters::Adapters>>,
    collectors: Vec<Box<dyn Collector>>,
    cfg: &GatewayConfig,
) -> Result<Front, GatewayError> {
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| engine.config().data_dir.clone());
    let shared = build_shared(cfg, data_dir, Some(engine), adapters, None, collectors)?;
    let http = wrap(own_routes(&shared), &shared).fallback_service(wrap(http, &shared));
    let grpc = wrap(grpc, &shared);
    Ok(Front { http, grpc, shared })
}

/// Standalone mode: the same layers in front of remote Kassa nodes (`cfg.upstreams`). Starts the
/// active health checker. The gRPC router proxies over HTTP/2 to each node's gRPC address.
pub fn standalone(cfg: &GatewayConfig) -> Result<Front, GatewayError> {
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| PathBuf::from("data"));
    let pool = Arc::new(Pool::new(cfg)?);
    pool.start_health_checks(&cfg.health_check)?;
    let shared = build_shared(cfg, data_dir, None, None, Some(pool), Vec::new())?;
    let proxy = Router::new().fallback(crate::upstream::proxy).with_state(shared.clone());
    let http = wrap(own_routes(&shared), &shared).fallback_service(wrap(proxy.clone(), &shared));
    let grpc = wrap(proxy, &shared);
    Ok(Front { http, grpc, shared })
}
