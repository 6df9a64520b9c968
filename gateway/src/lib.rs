//! Kassa's front door: per-core listeners and the layers every request passes — rate limits, JWT auth
//! with a durable user directory, CORS, security headers, request ids and trace context, timeouts,
//! body limits, metrics and access logs — around the in-process API (embedded mode) or in front of
//! remote Kassa nodes with load balancing, circuit breaking and health checks (standalone mode).

pub mod access_log;
mod actor;
mod adapters;
pub mod auth;
mod backup;
pub mod breaker;
pub mod config;
pub mod cors;
pub mod edge;
pub mod front;
pub mod health;
pub mod listen;
pub mod metrics;
pub mod ratelimit;
pub mod respond;
pub mod upstream;
pub mod users;

pub use auth::{Principal, Role, TokenKeys, issue_token};
pub use backup::clear_unsent_backups;
pub use config::{GatewayConfig, TlsConfig, UpstreamConfig};
pub use front::{Front, Shared, embedded, embedded_with, standalone, wrap};
pub use listen::{ListenError, Listeners, RouterFactory, Tls, load_tls};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway configuration: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("user directory: {0}")]
    Users(String),
    #[error("token: {0}")]
    Token(String),
}
