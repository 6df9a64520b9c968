//! Edge hygiene: request ids, W3C trace context, security headers, body limits.

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::respond;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const REQUEST_ID_LEN_MAX: usize = 128;

/// The request's id (echoed from a sane `X-Request-Id`, else a fresh UUIDv7), as its header value.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// A parsed W3C `traceparent`: version 00, trace id, this hop's span id, flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_to<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0xf)];
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; 2 * bytes.len()];
    hex_into(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid (per the spec).
    pub fn parse(text: &str) -> Option<TraceContext> {
        let mut parts = text.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = hex_to::<16>(trace).filter(|t| t.iter().any(|&b| b != 0))?;
        let parent_id = hex_to::<8>(parent).filter(|p| p.iter().any(|&b| b != 0))?;
        let flags = hex_to::<1>(flags)?[0];
        Some(TraceContext { trace_id, parent_id, flags })
    }

    /// A child of `parent` (same trace, new span), or a new root trace.
    pub fn child_of(parent: Option<TraceContext>) -> TraceContext {
        let mut span: [u8; 8] = rand::random();
        span[0] |= 1;
        match parent {
            Some(p) => TraceContext { trace_id: p.trace_id, parent_id: span, flags: p.flags },
            None => {
                let mut trace_id: [u8; 16] = rand::random();
                trace_id[0] |= 1;
                TraceContext { trace_id, parent_id: span, flags: 0 }
            }
        }
    }

    pub fn header(&self) -> String {
        String::from_utf8(self.header_bytes().to_vec()).expect("traceparent is ASCII")
    }

    /// The `traceparent` text, written without allocating.
    fn header_bytes(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = *b"00-________________________________-________________-__";
        hex_into(&mut out[3..35], &self.trace_id);
        hex_into(&mut out[36..52], &self.parent_id);
        hex_into(&mut out[53..55], &[self.flags]);
        out
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.header_bytes()).expect("traceparent is a valid header value")
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// A UUIDv7 from the thread-local CSPRNG (`Uuid::now_v7` asks the kernel for randomness on every call),
/// formatted without an intermediate string.
fn new_request_id() -> HeaderValue {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let random: [u8; 10] = rand::random();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

fn is_sane_request_id(value: &HeaderValue) -> bool {
    let text = value.as_bytes();
    !text.is_empty() && text.len() <= REQUEST_ID_LEN_MAX && text.iter().all(|b| b.is_ascii_graphic())
}

/// The ids a request carries, to be stamped on its response.
pub struct Stamp {
    id: HeaderValue,
    trace: HeaderValue,
}

impl Stamp {
    pub fn apply(self, response: &mut Response) {
        response.headers_mut().insert(X_REQUEST_ID, self.id);
        response.headers_mut().insert(TRACEPARENT, self.trace);
    }
}

/// Gives a request an id and a trace context, on the request (for the API and upstreams) and, through
/// the returned stamp, on the response.
pub fn assign_ids(req: &mut Request) -> Stamp {
    let id_value = req.headers().get(&X_REQUEST_ID).filter(|v| is_sane_request_id(v)).cloned().unwrap_or_else(new_request_id);
    let parent = req.headers().get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    let trace = TraceContext::child_of(parent);
    let trace_value = trace.header_value();
    req.headers_mut().insert(X_REQUEST_ID, id_value.clone());
    req.headers_mut().insert(TRACEPARENT, trace_value.clone());
    req.extensions_mut().insert(RequestId(id_value.clone()));
    req.extensions_mut().insert(trace);
    Stamp { id: id_value, trace: trace_value }
}

const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (http::header::X_FRAME_OPTIONS, "DENY"),
    (http::header::REFERRER_POLICY, "no-referrer"),
    (http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    (HeaderName::from_static("cross-origin-resource-policy"), "same-site"),
];

/// Security headers for every response (rejections included). HSTS only over TLS: over plain HTTP it
/// means nothing and can lock a host out of HTTP for a year.
pub fn secure(response: &mut Response, tls: bool) {
    let h = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    if tls {
        h.insert(http::header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// The 413 for a body whose `Content-Length` is over the limit.
pub fn oversized(req: &Request, limit: usize, grpc: bool) -> Option<Response> {
    declared_length(req)
        .filter(|&n| n > limit as u64)
        .map(|_| respond::error_for(grpc, StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
}

/// Bounds a body without a (trustworthy) length: reading past the limit fails (413 from the API).
pub fn limit_body(req: Request, limit: usize) -> Request {
    if declared_length(&req) == Some(0) || axum::body::HttpBody::is_end_stream(req.body()) {
        return req;
    }
    req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)))
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
}
