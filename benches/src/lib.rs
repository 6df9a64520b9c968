//! Kassa's load generator, micro-benchmarks and same-run reference measurements.
//!
//! Every headline figure is a ratio against a reference measured in the same run on the same machine by
//! the same generator (see the shared `BENCHMARKS.md` brief beside the repository): `ceiling` (a minimal axum handler), `pg-checkout`
//! and `pg-browse` (PostgreSQL), `redis-fsync` (Redis with `appendfsync always`).

pub mod bench;
pub mod chart;
pub mod dist;
pub mod engine_import;
pub mod errors;
pub mod grpc;
pub mod hist;
pub mod http;
pub mod kassa;
pub mod load;
pub mod mirrors;
pub mod refs;
pub mod report;
pub mod scale;
pub mod sys;
pub mod workloads;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("process: {0}")]
    Process(String),
    #[error("seeding: {0}")]
    Seed(String),
    #[error("reference store: {0}")]
    Store(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
