//! The HTTP API: every endpoint of the old product, basket, payment and notification services, at their
//! own paths and under the gateway's `/api/...` paths, plus `/health` and `/openapi.json`.

pub mod basket_json;
pub mod baskets;
mod json_writer;
pub mod notifications;
pub mod openapi;
pub mod page_cache;
pub mod payment_methods;
pub mod payments;
pub mod product_json;
pub mod products;
pub mod spec;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use bytes::Bytes;
use http_body_util::BodyExt;
use kassa_engine::{Engine, IdempotencyKey, Page};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::Access;
use crate::auth::Actor;
use crate::error::{ApiError, Envelope, ErrorInfo};
use crate::wire;
use spec::{LimitDefault, Param};

/// Settings of the HTTP API (the `[api]` table of the config file).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Page size when a list request has no `limit`.
    pub page_limit_default: usize,
    /// Largest `limit` accepted (at most the engine's page maximum, 1000).
    pub page_limit_max: usize,
    /// Page size of the notification lists when no `limit` is given (the old default).
    pub notification_limit_default: usize,
    /// Bytes of category pages kept for answering again while their category is unchanged (0: none).
    pub page_cache_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit_bytes: 64 * 1024,
            page_limit_default: 100,
            page_limit_max: 1000,
            notification_limit_default: 10,
            page_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What every handler gets: one shared allocation, so that handing it to a request is one reference
/// count rather than one per field (each a cache line the cores pass back and forth).
#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub engine: Engine,
    pub cfg: ApiConfig,
    /// The encoded OpenAPI document, written on first request (it depends on `cfg` and the currency).
    pub openapi: std::sync::OnceLock<Bytes>,
    pub pages: page_cache::PageCache,
    /// Payment providers' webhooks (`POST /webhooks/{provider}`); none: every provider's is a 404.
    pub webhooks: Option<webhooks::Webhooks>,
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    pub fn currency(&self) -> kassa_engine::Currency {
        self.engine.currency()
    }
}

/// A JSON response as Go's `encoding/json` writes it, with Gin's content type.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match wire::to_go_json(value) {
        Ok(body) => json_body_response(status, body),
        Err(e) => {
            tracing::error!(error = %e, "response could not be serialized");
            let mut r = Response::new(Body::from(r#"{"error":"Internal Server Error","message":"response could not be serialized"}"#));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// A body already written as Go's JSON (see [`product_json`]), with Gin's content type.
pub fn json_body_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

pub fn ok<T: Serialize + ?Sized>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

pub fn created<T: Serialize + ?Sized>(value: &T) -> Response {
    json_response(StatusCode::CREATED, value)
}

pub type ApiResult = Result<Response, ApiError>;

/// The caller, if the gateway's auth layer identified one.
pub struct Caller(pub Option<Actor>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Actor>().cloned()))
    }
}

impl Caller {
    pub fn actor(&self) -> Option<&Actor> {
        self.0.as_ref()
    }
}

/// Path segments, with rejections (bad UTF-8, wrong type) as 400 envelopes.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(P(v)),
            Err(e) => Err(ApiError::bad_request(format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// A path segment used as a key (user id, payment id, category, ...): bounded length, no control chars.
pub fn segment<'a>(value: &'a str, what: &str, max: usize) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{what} is required")));
    }
    if value.len() > max {
        return Err(ApiError::bad_request(format!("{what} is longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{what} contains control characters")));
    }
    Ok(value)
}

pub const ID_MAX: usize = 128;
pub const TEXT_MAX: usize = 256;

/// Query parameters, with rejections as 400 envelopes.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::bad_request(format!("invalid query: {}", e.body_text()))),
        }
    }
}

#[derive(serde::Deserialize, Default)]
pub struct PageParams {
    pub limit: Option<String>,
    pub offset: Option<String>,
    /// Keyset paging; product listings only (`product_page`).
    pub after: Option<String>,
}

impl PageParams {
    /// [`PageParams::page`] plus the keyset cursor `after`, for product listings.
    pub fn product_page(&self, cfg: &ApiConfig, which: LimitDefault) -> Result<Page, ApiError> {
        let page = self.limit_and_offset(cfg, which)?;
        let after = match self.after.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                kassa_engine::Cursor::parse(text)
                    .filter(|_| text.len() <= spec::CURSOR_LEN_MAX)
                    .ok_or_else(|| ApiError::bad_request("after must be the next_after of a previous page (key:id)"))?,
            ),
        };
        Ok(page.after(after))
    }

    /// The page asked for: `limit` in 1..=max (`which` default when absent), `offset` in 0..=100000
    /// (the bounds of `spec::limit_max` and `spec::OFFSET_MAX`, which the OpenAPI document states).
    pub fn page(&self, cfg: &ApiConfig, which: LimitDefault) -> Result<Page, ApiError> {
        if self.after.as_deref().is_some_and(|a| !a.is_empty()) {
            return Err(ApiError::bad_request("after pages product listings only; use offset here"));
        }
        self.limit_and_offset(cfg, which)
    }

    fn limit_and_offset(&self, cfg: &ApiConfig, which: LimitDefault) -> Result<Page, ApiError> {
        let max = spec::limit_max(cfg);
        let limit = match self.limit.as_deref() {
            None | Some("") => spec::limit_default(cfg, which),
            Some(text) => match text.parse::<usize>() {
                Ok(v) if (1..=max).contains(&v) => v,
                _ => {
                    return Err(ApiError::bad_request(format!("limit must be a whole number between 1 and {max}")));
                }
            },
        };
        let offset_max = spec::OFFSET_MAX;
        let offset = match self.offset.as_deref() {
            None | Some("") => 0,
            Some(text) => match text.parse::<usize>() {
                Ok(v) if v <= offset_max => v,
                _ => {
                    return Err(ApiError::bad_request(format!("offset must be a whole number between 0 and {offset_max}")));
                }
            },
        };
        Ok(Page::new(offset, limit))
    }
}

/// A write: the raw body (bounded) and the idempotency key, if the client sent one.
pub struct Write {
    pub body: Bytes,
    pub idempotency: Option<IdempotencyKey>,
}

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const IDEMPOTENCY_KEY_MAX: usize = 128;

fn idempotency_key(parts: &Parts) -> Result<Option<String>, ApiError> {
    let mut values = parts.headers.get_all(IDEMPOTENCY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request("Idempotency-Key must be sent once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > IDEMPOTENCY_KEY_MAX || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ApiError::bad_request(format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters")));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

impl FromRequest<AppState> for Write {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let limit = state.cfg.body_limit_bytes;
        let too_large = || ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {limit} bytes"));
        // Oversized bodies up to this size are read and dropped before the 413, so that the client, still
        // sending, reliably receives the answer instead of a reset connection; larger ones are cut off.
        let drain_max = limit.saturating_mul(4).max(1 << 20);
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
            && len > drain_max as u64
        {
            return Err(too_large());
        }
        let key = idempotency_key(&parts)?;
        let mut body = body;
        let mut collected = bytes::BytesMut::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("request body could not be read: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total = total.saturating_add(data.len());
                if total > drain_max {
                    break;
                }
                if total <= limit {
                    collected.extend_from_slice(&data);
                }
            }
        }
        if total > limit {
            return Err(too_large());
        }
        let body = collected.freeze();
        let idempotency = key.map(|key| {
            let scope = parts.extensions.get::<Actor>().map_or_else(|| "anonymous".to_string(), |a| a.subject.clone());
            let path = canonical_path(parts.uri.path());
            let fingerprint = wire::fnv1a(&[parts.method.as_str().as_bytes(), path.as_bytes(), &body]);
            IdempotencyKey { scope, key, fingerprint }
        });
        Ok(Write { body, idempotency })
    }
}

impl Write {
    fn is_blank(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as JSON; empty or malformed bodies are 400 ("Invalid request body").
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.is_blank() {
            return Err(ApiError::invalid_body("request body is empty"));
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::invalid_body(e.to_string()))
    }

    /// Like `json`, but an empty body means all defaults (for actions whose body is optional).
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.is_blank() { Ok(T::default()) } else { self.json() }
    }

    /// The typed command, carrying this write's idempotency key.
    pub fn keyed<T: kassa_engine::Answer>(&self, command: kassa_engine::Cmd<T>) -> kassa_engine::Cmd<T> {
        command.idempotent(self.idempotency.clone())
    }
}

/// One HTTP route: the method and path (axum syntax, which is also OpenAPI's), who may call it, and
/// what the OpenAPI document says about it. The router, the access policy (`access::HttpPolicy`) and the
/// document are all built from this table.
#[derive(Clone)]
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    /// Who may call the route; the gateway enforces it (`access`), the handler only checks ownership.
    pub access: Access,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Schema name of the request body, if the route takes one.
    pub request: Option<&'static str>,
    /// An empty body means all defaults.
    pub request_optional: bool,
    /// Status and schema name of the success response.
    pub status: u16,
    pub response: &'static str,
    /// Path and query parameters (every `{name}` of the path is declared).
    pub params: &'static [Param],
    /// The route's own error statuses (not found, conflict, gone); the ones every route of its kind can
    /// answer (bad input, auth, limits) are added by the document.
    pub errors: &'static [u16],
    /// A write whose `Idempotency-Key` makes retries safe (every write but the few that do not keep one).
    pub idempotent: bool,
    pub handler: MethodRouter<AppState>,
}

pub(crate) fn def<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    tag: &'static str,
    summary: &'static str,
    handler: H,
) -> RouteDef
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("standard method");
    let idempotent = method != Method::GET;
    RouteDef {
        method,
        path,
        access,
        tag,
        summary,
        request: None,
        request_optional: false,
        status: 200,
        response: "Object",
        params: &[],
        errors: &[],
        idempotent,
        handler: on(filter, handler),
    }
}

impl RouteDef {
    pub(crate) fn body(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self
    }
    /// A body whose absence means all defaults.
    pub(crate) fn optional_body(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self.request_optional = true;
        self
    }
    pub(crate) fn returns(mut self, status: u16, schema: &'static str) -> Self {
        self.status = status;
        self.response = schema;
        self
    }
    pub(crate) fn params(mut self, params: &'static [Param]) -> Self {
        self.params = params;
        self
    }
    pub(crate) fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
    /// A write that keeps no idempotency record (its `Idempotency-Key` is checked, then not used).
    pub(crate) fn without_idempotency(mut self) -> Self {
        self.idempotent = false;
        self
    }
    /// A write: takes a body (even if it ignores it) and an `Idempotency-Key`.
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// The service paths the gateway also serves under `/api` (`/payment-methods` is not under `/payments`).
const SERVICES: [&str; 4] = ["/products", "/baskets", "/payments", "/payment-methods"];

/// The gateway path under which a service path is also served (`/products/1` → `/api/products/1`).
pub fn gateway_alias(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/api/v1/notifications") {
        return Some(format!("/api/notifications{rest}"));
    }
    SERVICES.iter().find(|p| path.starts_with(*p)).map(|_| format!("/api{path}"))
}

/// The service path of a request path, so that a retry through the gateway path (`/api/products`) and
/// one at the service path (`/products`) are the same request for idempotency.
pub fn canonical_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/api/notifications") {
        return format!("/api/v1/notifications{rest}");
    }
    for service in SERVICES {
        if let Some(rest) = path.strip_prefix("/api").filter(|r| r.starts_with(service)) {
            return rest.to_string();
        }
    }
    path.to_string()
}

/// Every route of the API, each service route once (its alias is added by `all_routes`).
pub fn route_table() -> Vec<RouteDef> {
    let mut routes = vec![
        def(Method::GET, "/health", Access::Public, "system", "Service health (RFC 3339 timestamp without fraction)", health)
            .returns(200, "Health")
            .errors(&[503]),
        def(Method::GET, "/api/v1/health", Access::Public, "system", "Service health (full RFC 3339 timestamp)", health_v1)
            .returns(200, "Health")
            .errors(&[503]),
        def(Method::GET, "/openapi.json", Access::Public, "system", "This OpenAPI document", openapi::serve),
    ];
    routes.extend(products::routes());
    routes.extend(baskets::routes());
    routes.extend(payments::routes());
    routes.extend(payment_methods::routes());
    routes.extend(notifications::routes());
    routes.extend(webhooks::routes());
    routes
}

/// (method, path) of every route the router serves, aliases included.
pub fn all_routes() -> Vec<(Method, String, RouteDef)> {
    let mut out = Vec::new();
    for r in route_table() {
        if let Some(alias) = gateway_alias(r.path) {
            out.push((r.method.clone(), alias, r.clone()));
        }
        out.push((r.method.clone(), r.path.to_string(), r));
    }
    out
}

/// The HTTP API as an axum router (state applied; ready to serve or to nest into the gateway).
pub fn http_router(engine: Engine, cfg: ApiConfig) -> Router {
    http_router_with(engine, cfg, None)
}

/// [`http_router`] taking payment providers' webhooks.
pub fn http_router_with(engine: Engine, cfg: ApiConfig, webhooks: Option<webhooks::Webhooks>) -> Router {
    let pages = page_cache::PageCache::new(cfg.page_cache_bytes);
    let state = AppState(Arc::new(App { engine, cfg, openapi: Default::default(), pages, webhooks }));
    let mut service = Router::new();
    let mut notification = Router::new();
    for (_, path, r) in all_routes() {
        if path.contains("/notifications") {
            notification = notification.route(&path, r.handler);
        } else {
            service = service.route(&path, r.handler);
        }
    }
    let notification = notification.layer(axum::middleware::map_response(notification_envelope));
    service
        .merge(notification)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
}

/// The notification service's errors carry the text in `error`, which is where its old clients read it,
/// and, like every other error, in `message`. A refusal as overloaded, which the old service never
/// answered, keeps its label and its `Retry-After`, as on every other route.
async fn notification_envelope(response: Response) -> Response {
    match response.extensions().get::<ErrorInfo>() {
        Some(info) if info.error == crate::error::OVERLOADED => response,
        Some(info) => {
            let mut out = json_response(response.status(), &Envelope { error: &info.message, message: &info.message });
            out.extensions_mut().insert(info.clone());
            out
        }
        None => response,
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(256).collect();
    ApiError::not_found(format!("no route for {method} {path}"))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(256).collect();
    ApiError::status(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {path}"))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    service: &'static str,
    status: &'static str,
    timestamp: String,
    version: &'static str,
}

fn health_of(state: &AppState, timestamp: String) -> Response {
    let open = state.engine.is_open();
    let body =
        Health { service: "kassa", status: if open { "healthy" } else { "unhealthy" }, timestamp, version: env!("CARGO_PKG_VERSION") };
    json_response(if open { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    health_of(&state, wire::rfc3339_seconds(kassa_engine::now_micros()))
}

async fn health_v1(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    health_of(&state, wire::rfc3339(kassa_engine::now_micros()))
}

/// A `(key, value)` list serialized as a JSON object, in its order.
pub struct Pairs<'a>(pub &'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A JSON object of strings from a request, kept in the client's order, bounded.
pub fn pairs_from(map: Option<serde_json::Map<String, serde_json::Value>>) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let Some(map) = map else { return Ok(None) };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => out.push((k, s)),
            _ => {
                return Err(ApiError::invalid_body(format!("metadata/data value of '{k}' must be a string")));
            }
        }
    }
    Ok(Some(out))
}
