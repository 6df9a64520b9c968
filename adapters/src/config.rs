//! `[adapters.*]` of the configuration: one section per target, each off unless it names its target, each
//! with its tuning beside it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptersConfig {
    /// Worker threads of the adapters' runtime (0 = 1): their own, away from the shard cores.
    pub threads: usize,
    pub postgres: Option<PostgresConfig>,
    pub mariadb: Option<MariadbConfig>,
    pub redis: Option<RedisConfig>,
    pub kafka: Option<KafkaConfig>,
}

impl AdaptersConfig {
    /// The targets' addresses from the environment where the file turns a mirror on without one (they
    /// carry passwords): `KASSA_ADAPTERS_POSTGRES_URL`, `KASSA_ADAPTERS_POSTGRES_NOTIFICATIONS_URL`,
    /// `KASSA_ADAPTERS_MARIADB_URL`, `KASSA_ADAPTERS_REDIS_URL`, `KASSA_ADAPTERS_KAFKA_BROKERS`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let fill = |field: &mut String, name: &str| {
            if field.is_empty()
                && let Some(v) = env(name).filter(|v| !v.is_empty())
            {
                *field = v;
            }
        };
        if let Some(pg) = &mut self.postgres {
            fill(&mut pg.url, "KASSA_ADAPTERS_POSTGRES_URL");
            if pg.notifications_url.as_deref().is_none_or(str::is_empty)
                && let Some(v) = env("KASSA_ADAPTERS_POSTGRES_NOTIFICATIONS_URL").filter(|v| !v.is_empty())
            {
                pg.notifications_url = Some(v);
            }
        }
        if let Some(m) = &mut self.mariadb {
            fill(&mut m.url, "KASSA_ADAPTERS_MARIADB_URL");
        }
        if let Some(r) = &mut self.redis {
            fill(&mut r.url, "KASSA_ADAPTERS_REDIS_URL");
        }
        if let Some(k) = &mut self.kafka {
            fill(&mut k.brokers, "KASSA_ADAPTERS_KAFKA_BROKERS");
        }
    }
}

/// How an adapter batches and retries; every target section carries one (flattened into it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// Most feed records written in one target transaction. The journal itself is the buffer: an adapter
    /// reads the next batch only when its target has taken the last one, so a slow target only grows its
    /// own lag and holds no memory for it.
    pub batch_max: usize,
    /// After a write that took everything the feed had (a batch not full), wait this long before the next,
    /// so that records gather into fewer, larger transactions: a transaction costs the target (and a shared
    /// machine) far more than a record in it. Adds at most this much to the lag.
    pub linger_ms: u64,
    /// First retry delay after a failed write; doubles up to `retry_max_ms`, with jitter.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
}

const LINGER_MS: u64 = 50;

impl Default for Tuning {
    fn default() -> Self {
        Tuning { batch_max: 512, linger_ms: LINGER_MS, retry_min_ms: 100, retry_max_ms: 10_000 }
    }
}

/// PostgreSQL: `products` in the catalog's database, `notifications` in the notifications' database.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// The catalog's database (the old `product_service`), e.g. `postgres://user:pw@host:5432/product_service`.
    pub url: String,
    /// The notifications' database (the old `notification_service`); default: `url`.
    pub notifications_url: Option<String>,
    #[serde(flatten)]
    pub tuning: Tuning,
}

/// MariaDB: `payments` and `payment_items` (the old `payment_service`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MariadbConfig {
    /// e.g. `mysql://user:pw@host:3306/payment_service`.
    pub url: String,
    #[serde(flatten)]
    pub tuning: Tuning,
}

/// Redis: `basket:<user_id>` keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// e.g. `redis://host:6379/0`.
    pub url: String,
    #[serde(flatten)]
    pub tuning: Tuning,
}

/// Kafka: `payment-events`, `stock-events`, `basket-events`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of each topic when the adapter creates it (the old estate's MSK default).
    pub partitions: i32,
    /// Replication factor of topics the adapter creates.
    pub replication: i32,
    /// Prefix of the transactional ids (one per shard: `<prefix>-<shard>`); two Kassa nodes writing one
    /// cluster need different prefixes.
    pub transactional_id: String,
    /// A new Kafka adapter (or one whose cursor fell off retention) starts from the feed's current position
    /// unless this is on, in which case it publishes the shard snapshot's state first (explicit opt-in:
    /// consumers would see old events again).
    pub snapshot: bool,
    #[serde(flatten)]
    pub tuning: Tuning,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            partitions: 3,
            replication: 1,
            transactional_id: "kassa".into(),
            snapshot: false,
            tuning: Tuning::default(),
        }
    }
}
