//! Kassa's HTTP (axum) and gRPC (tonic) surfaces, compatible with the old system's contract.
//!
//! - [`http_router`]: every endpoint of the old product, basket, payment and notification services.
//! - [`grpc_router`]: `product.ProductService`, `basket.BasketService`, `payment.PaymentService`,
//!   health and reflection.
//! - [`access`]: who may call each route and RPC (the one policy, which the gateway enforces).
//! - [`Actor`]: the caller identity the gateway's auth layer inserts once the policy admitted it;
//!   [`auth::authorize`] is the one ownership rule.

pub mod access;
pub mod auth;
pub mod error;
pub mod grpc;
pub mod http;
pub mod scan;
pub use kassa_engine::wire;

pub use auth::Actor;
/// The router type both APIs are built on (so that callers need not depend on axum themselves).
pub use axum::Router;
pub use error::ApiError;
pub use grpc::grpc_router;
pub use http::notifications::notification_json;
pub use http::webhooks::Webhooks;
pub use http::{ApiConfig, http_router, http_router_with};
/// The health and reflection crates, so that clients (tests, tools) can use their generated clients.
pub use {tonic_health, tonic_reflection};

/// Code generated from `proto/` (messages, servers and clients).
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    pub mod product {
        tonic::include_proto!("product");
    }
    pub mod basket {
        tonic::include_proto!("basket");
    }
    pub mod payment {
        tonic::include_proto!("payment");
    }
    /// Encoded descriptors of all three files (served by reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kassa_descriptor");
}
