//! One mapping from engine failures to HTTP statuses and the old system's error envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kassa_engine::{EngineError, ErrorKind};
use serde::Serialize;

use crate::http::json_response;

/// An HTTP error: `{"error": <label or reason phrase>, "message": <text>}`. Notification routes put the
/// text in both fields, `error` being where their old clients read it (see `http::notification_envelope`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {error}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub message: String,
}

/// Marks an error response so that layers can re-shape the envelope.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// The envelope's label (`error`).
    pub error: String,
    pub message: String,
}

/// The error body: `{"error", "message"}`, in that order.
#[derive(Serialize)]
pub(crate) struct Envelope<'a> {
    pub error: &'a str,
    pub message: &'a str,
}

impl ApiError {
    /// An error whose label is the status's reason phrase (the old use-case errors).
    pub fn status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, error: status.canonical_reason().unwrap_or("Error").to_string(), message: message.into() }
    }
    /// An input error with a fixed label (the old handler errors, e.g. "Invalid product ID").
    pub fn labelled(status: StatusCode, error: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::status(StatusCode::BAD_REQUEST, message)
    }
    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid request body", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::status(StatusCode::NOT_FOUND, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::status(StatusCode::FORBIDDEN, message)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::InsufficientStock => StatusCode::CONFLICT,
        ErrorKind::Expired => StatusCode::GONE,
        ErrorKind::Unavailable | ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Declined => StatusCode::PAYMENT_REQUIRED,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e.message, "engine failure");
        }
        if e.kind == ErrorKind::Overloaded {
            return ApiError::labelled(StatusCode::SERVICE_UNAVAILABLE, OVERLOADED, e.message);
        }
        ApiError::status(status_of(e.kind), e.message)
    }
}

/// The label of a 503 for a full shard: the client may retry after `Retry-After` seconds.
pub const OVERLOADED: &str = "overloaded";
const OVERLOADED_RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &Envelope { error: &self.error, message: &self.message });
        if self.error == OVERLOADED {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(OVERLOADED_RETRY_AFTER_SECS));
        }
        response.extensions_mut().insert(ErrorInfo { error: self.error, message: self.message });
        response
    }
}

/// gRPC status for an engine failure.
pub fn grpc_status(e: EngineError) -> tonic::Status {
    let code = match e.kind {
        ErrorKind::Invalid => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Conflict | ErrorKind::InsufficientStock | ErrorKind::Expired | ErrorKind::Declined => tonic::Code::FailedPrecondition,
        // Both are transient: clients retry UNAVAILABLE with backoff.
        ErrorKind::Unavailable | ErrorKind::Overloaded => tonic::Code::Unavailable,
        ErrorKind::Internal => tonic::Code::Internal,
    };
    tonic::Status::new(code, e.message)
}
