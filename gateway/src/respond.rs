//! The gateway's own error responses: JSON `{"error": ..., "message": ...}` (the API's envelope) for HTTP,
//! trailers-only status for gRPC.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

/// `error` keeps the text the old gateway's clients read there; `message` carries it too, as in every
/// error envelope of the API.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message, "message": message }))).into_response()
}

/// The gRPC code for an HTTP status the gateway decided on.
pub fn grpc_code(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => 4,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::NOT_FOUND => 12,
        _ => 13,
    }
}

/// A trailers-only gRPC error: HTTP 200 with `grpc-status` and `grpc-message` headers.
pub fn grpc_error(status: StatusCode, message: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(grpc_code(status))));
    if let Ok(v) = HeaderValue::from_str(&message.replace(' ', "%20")) {
        headers.insert("grpc-message", v);
    }
    response
}

/// An error in whichever protocol the request spoke.
pub fn error_for(grpc: bool, status: StatusCode, message: &str) -> Response {
    if grpc { grpc_error(status, message) } else { error(status, message) }
}
