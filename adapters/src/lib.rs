//! Adapters: each follows the engine's change feed ([`kassa_engine::Engine::subscribe`]) shard by shard
//! and writes what it sees into one target of the old estate, in the tables, keys, topics and payloads
//! that estate's consumers already read (`docs/ARCHITECTURE.md`, "Adapters").
//!
//! The seam is [`Target`]: a target applies a batch of one shard's feed records and its own cursor in one
//! target transaction, guarded by entity versions, so a replay changes nothing. The [`runner`] does
//! everything else once for every target: cursors, bootstrap from a snapshot, batching, retry with backoff
//! and jitter, dead letters, lag figures.

pub mod config;
mod entity;
pub mod kafka;
mod target;

pub use config::{AdaptersConfig, Tuning};
pub use entity::Entity;
pub use kafka::KafkaConnect;
pub use target::{Connect, Target, TargetError};
