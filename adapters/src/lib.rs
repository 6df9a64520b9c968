//! Adapters: each follows the engine's change feed ([`kassa_engine::Engine::subscribe`]) shard by shard
//! and writes what it sees into one target of the old estate, in the tables, keys, topics and payloads
//! that estate's consumers already read (`docs/ARCHITECTURE.md`, "Adapters").
//!
//! The seam is [`Target`]: a target applies a batch of one shard's feed records and its own cursor in one
//! target transaction, guarded by entity versions, so a replay changes nothing. The [`runner`] does
//! everything else once for every target: cursors, bootstrap from a snapshot, batching, retry with backoff
//! and jitter, dead letters, lag figures.

pub mod config;
mod dead_letter;
mod entity;
pub mod kafka;
pub mod mariadb;
pub mod postgres;
pub mod redis;
pub mod runner;
mod start;
mod status;
mod target;
pub mod verify;

pub use self::redis::RedisConnect;
pub use config::{AdaptersConfig, Tuning};
pub use dead_letter::{DeadLetter, DeadLetters};
pub use entity::Entity;
pub use kafka::KafkaConnect;
pub use mariadb::MariadbConnect;
pub use postgres::PostgresConnect;
pub use runner::Adapters;
pub use start::{TARGETS, schema, start};
pub use status::{AdapterStatus, ShardState, ShardStatus};
pub use target::{Connect, Target, TargetError};
pub use verify::{Difference, Verification};
