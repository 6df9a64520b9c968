//! From the configuration to running adapters: one per configured target.

use std::path::Path;

use kassa_engine::Engine;

use crate::config::AdaptersConfig;
use crate::{Adapters, Connect, kafka, mariadb, postgres, redis};

/// The targets an adapter exists for, by name.
pub const TARGETS: [&str; 4] = ["postgres", "mariadb", "redis", "kafka"];

/// Starts every configured adapter on its own runtime (none configured: an empty set, no threads used by
/// the mirrors' work).
pub fn start(engine: &Engine, data_dir: &Path, cfg: &AdaptersConfig) -> std::io::Result<Adapters> {
    let mut adapters = Adapters::new(engine, data_dir, cfg.threads)?;
    if let Some(c) = &cfg.postgres {
        adapters.spawn(postgres::PostgresConnect::new(c.clone(), engine.currency()), c.tuning.clone());
    }
    if let Some(c) = &cfg.mariadb {
        adapters.spawn(mariadb::MariadbConnect::new(c).with_currency(engine.currency()), c.tuning.clone());
    }
    if let Some(c) = &cfg.redis {
        adapters.spawn(redis::RedisConnect::new(c).with_currency(engine.currency()), c.tuning.clone());
    }
    if let Some(c) = &cfg.kafka {
        adapters.spawn(kafka::KafkaConnect::new(c.clone()), c.tuning.clone());
    }
    Ok(adapters)
}

/// The schema (DDL, keys or topics) adapter `target` creates, with the configured settings where there
/// are any (`None` for an unknown target).
pub fn schema(target: &str, cfg: &AdaptersConfig, currency: kassa_engine::Currency) -> Option<String> {
    Some(match target {
        "postgres" => postgres::PostgresConnect::new(cfg.postgres.clone().unwrap_or_default(), currency).schema(),
        "mariadb" => mariadb::MariadbConnect::new(&cfg.mariadb.clone().unwrap_or_default()).with_currency(currency).schema(),
        "redis" => redis::RedisConnect::new(&cfg.redis.clone().unwrap_or_default()).with_currency(currency).schema(),
        "kafka" => kafka::KafkaConnect::new(cfg.kafka.clone().unwrap_or_default()).schema(),
        _ => return None,
    })
}
