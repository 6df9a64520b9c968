//! Edge hygiene: request ids, W3C trace context, security headers, CORS, per-route timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::GatewayError;
use crate::config::CorsConfig;
use crate::front::Shared;
use crate::respond;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const REQUEST_ID_LEN_MAX: usize = 128;

/// The request's id (echoed from a sane `X-Request-Id`, else a fresh UUIDv7).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A parsed W3C `traceparent`: version 00, trace id, this hop's span id, flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_to<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid (per the spec).
    pub fn parse(text: &str) -> Option<TraceContext> {
        let mut parts = text.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = hex_to::<16>(trace).filter(|t| t.iter().any(|&b| b != 0))?;
        let parent_id = hex_to::<8>(parent).filter(|p| p.iter().any(|&b| b != 0))?;
        let flags = hex_to::<1>(flags)?[0];
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A child of `parent` (same trace, new span), or a new root trace.
    pub fn child_of(parent: Option<TraceContext>) -> TraceContext {
        let mut span: [u8; 8] = rand::random();
        span[0] |= 1;
        match parent {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                parent_id: span,
                flags: p.flags,
            },
            None => {
                let mut trace_id: [u8; 16] = rand::random();
                trace_id[0] |= 1;
                TraceContext {
                    trace_id,
                    parent_id: span,
                    flags: 0,
                }
            }
        }
    }

    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= REQUEST_ID_LEN_MAX
        && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_string())
}

/// Gives every request an id and a trace context, on the request (for the API and upstreams) and on
/// the response.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let parent = req
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let trace = TraceContext::child_of(parent);
    let id_value =
        HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let trace_value = HeaderValue::from_str(&trace.header())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(X_REQUEST_ID, id_value.clone());
    req.headers_mut().insert(TRACEPARENT, trace_value.clone());
    req.extensions_mut().insert(RequestId(id));
    req.extensions_mut().insert(trace);
    let mut response = next.run(req).await;
    response.headers_mut().insert(X_REQUEST_ID, id_value);
    response.headers_mut().insert(TRACEPARENT, trace_value);
    response
}

/// Security headers on every response (rejections included). HSTS only over TLS: over plain HTTP it
/// means nothing and can lock a host out of HTTP for a year.
pub async fn security_headers(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-site"),
    );
    if shared.cfg.tls.is_some() {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Per-route deadline (the longest configured prefix wins); 504 (or DEADLINE_EXCEEDED) when exceeded.
/// Only the response head is bounded, so gRPC streams are not cut.
pub async fn deadline(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let limit: Duration = shared.cfg.timeouts.for_path(req.uri().path());
    let grpc = crate::auth::is_grpc(req.headers());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => respond::error_for(grpc, StatusCode::GATEWAY_TIMEOUT, "request timed out"),
    }
}

/// Refuses bodies over the limit: at once when `Content-Length` says so, else when the stream exceeds it.
pub async fn body_limit(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let limit = shared.cfg.body_limit_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let grpc = crate::auth::is_grpc(req.headers());
        return respond::error_for(
            grpc,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        );
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

fn parse_list<T>(
    items: &[String],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, GatewayError> {
    items
        .iter()
        .map(|s| parse(s).ok_or_else(|| GatewayError::Config(format!("cors: bad {what} {s:?}"))))
        .collect()
}

/// The CORS layer from configuration; `None` when no origin is allowed (no CORS headers at all).
pub fn cors_layer(cfg: &CorsConfig) -> Result<Option<CorsLayer>, GatewayError> {
    if cfg.allowed_origins.is_empty() {
        return Ok(None);
    }
    let methods = parse_list(&cfg.allowed_methods, "method", |s| {
        Method::from_bytes(s.as_bytes()).ok()
    })?;
    let headers = parse_list(&cfg.allowed_headers, "header", |s| {
        HeaderName::from_bytes(s.as_bytes()).ok()
    })?;
    let exposed = parse_list(&cfg.exposed_headers, "header", |s| {
        HeaderName::from_bytes(s.as_bytes()).ok()
    })?;
    let origin = if cfg.allowed_origins.iter().any(|o| o == "*") {
        if cfg.allow_credentials {
            return Err(GatewayError::Config(
                "cors: \"*\" cannot be combined with credentials".into(),
            ));
        }
        AllowOrigin::any()
    } else {
        AllowOrigin::list(parse_list(&cfg.allowed_origins, "origin", |s| {
            HeaderValue::from_str(s).ok()
        })?)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(exposed)
            .allow_credentials(cfg.allow_credentials)
            .max_age(Duration::from_secs(cfg.max_age_secs)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parse_and_child() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceContext::parse(text).unwrap();
        assert_eq!(parent.header(), text);
        let child = TraceContext::child_of(Some(parent));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_eq!(child.flags, 1);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        let root = TraceContext::child_of(None);
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
    }

    #[test]
    fn cors_refuses_wildcard_with_credentials() {
        let cfg = CorsConfig {
            allow_credentials: true,
            ..CorsConfig::default()
        };
        assert!(cors_layer(&cfg).is_err());
        let cfg = CorsConfig {
            allowed_origins: vec!["https://shop.example".into()],
            allow_credentials: true,
            ..CorsConfig::default()
        };
        assert!(cors_layer(&cfg).unwrap().is_some());
        let cfg = CorsConfig {
            allowed_origins: vec![],
            ..CorsConfig::default()
        };
        assert!(cors_layer(&cfg).unwrap().is_none());
    }
}
