#![allow(dead_code)]
//! Fresh, private copies of the old estate's targets for one test: two PostgreSQL databases (catalog and
//! notifications), one MariaDB database, one Redis database index, and a Kafka transactional-id prefix
//! (the topics are the old fixed names, so Kafka readers filter by the test's own payment ids).

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

pub struct Estate {
    pub tag: String,
    pg_base: String,
    pub pg_catalog: String,
    pub pg_notifications: String,
    mysql_base: String,
    pub mysql: String,
    pub redis: String,
    pub brokers: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"))
}

/// `scheme://user:pw@host:port/db` with the database replaced.
fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

/// One Kafka event as the old consumer sees it.
#[derive(Debug, Clone)]
pub struct KafkaEvent {
    pub topic: String,
    pub key: String,
    pub event_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl KafkaEvent {
    /// Whether the event is about payment `id` (its own, or a stock/basket event it caused).
    pub fn related(&self, id: &str) -> bool {
        self.body["payment_id"] == id || self.body["metadata"]["payment_id"] == id
    }
}

impl Estate {
    /// `redis_db` must be unique per test (Redis has 16 numbered databases; the adapters' own tests use 5
    /// and 6).
    pub async fn fresh(name: &str, redis_db: u8) -> Estate {
        let tag = format!("kassa_test_{name}_{:08x}", rand::rng().random::<u32>());
        let pg_base = env("KASSA_PG_URL");
        let admin = postgres(&pg_base).await;
        for db in ["catalog", "notifications"] {
            admin.batch_execute(&format!("CREATE DATABASE {tag}_{db}")).await.expect("create PostgreSQL database");
        }
        let mysql_base = env("KASSA_MYSQL_URL");
        let pool = mysql_async::Pool::new(mysql_base.as_str());
        let mut conn = pool.get_conn().await.expect("MariaDB");
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("CREATE DATABASE {tag}")).await.expect("create MariaDB database");
        drop(conn);
        pool.disconnect().await.ok();
        let redis = with_db(&env("KASSA_REDIS_URL"), &redis_db.to_string());
        let client = redis::Client::open(redis.as_str()).expect("Redis URL");
        let mut r = client.get_multiplexed_async_connection().await.expect("Redis");
        let _: () = redis::cmd("FLUSHDB").query_async(&mut r).await.expect("FLUSHDB");
        Estate {
            pg_catalog: with_db(&pg_base, &format!("{tag}_catalog")),
            pg_notifications: with_db(&pg_base, &format!("{tag}_notifications")),
            mysql: with_db(&mysql_base, &tag),
            redis,
            brokers: env("KASSA_KAFKA_BROKERS"),
            tag,
            pg_base,
            mysql_base,
        }
    }

    /// The `[adapters.*]` sections pointing at this estate (plus `extra` TOML).
    pub fn toml(&self, extra: &str) -> String {
        self.toml_via(extra, None)
    }

    /// Like [`Estate::toml`], with PostgreSQL, MariaDB and Redis reached through `proxies` (their
    /// `host:port`s in that order), so a test can take a target away.
    pub fn toml_via(&self, extra: &str, proxies: Option<[&str; 3]>) -> String {
        let via = |url: &str, i: usize| match proxies {
            Some(p) => with_host(url, p[i]),
            None => url.to_string(),
        };
        format!(
            "{extra}\n[adapters.postgres]\nurl = \"{}\"\nnotifications_url = \"{}\"\nretry_max_ms = 500\n\
             [adapters.mariadb]\nurl = \"{}\"\nretry_max_ms = 500\n\
             [adapters.redis]\nurl = \"{}\"\nretry_max_ms = 500\n\
             [adapters.kafka]\nbrokers = \"{}\"\ntransactional_id = \"{}\"\nretry_max_ms = 500\n",
            via(&self.pg_catalog, 0),
            via(&self.pg_notifications, 0),
            via(&self.mysql, 1),
            via(&self.redis, 2),
            self.brokers,
            self.tag
        )
    }

    pub async fn postgres_catalog(&self) -> tokio_postgres::Client {
        postgres(&self.pg_catalog).await
    }

    pub async fn postgres_notifications(&self) -> tokio_postgres::Client {
        postgres(&self.pg_notifications).await
    }

    async fn mysql(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.mysql.as_str()).await.expect("MariaDB")
    }

    /// `payments.id → status`.
    pub async fn mariadb_statuses(&self) -> std::collections::HashMap<String, String> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.mysql().await;
        let rows: Vec<(String, String)> = conn.query("SELECT id, status FROM payments").await.expect("payments");
        rows.into_iter().collect()
    }

    /// A payment's items as `(product_id, quantity, price)`, by product id.
    pub async fn mariadb_items(&self, payment_id: &str) -> Vec<(i64, i64, f64)> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.mysql().await;
        conn.exec("SELECT product_id, quantity, price FROM payment_items WHERE payment_id = ? ORDER BY product_id", (payment_id,))
            .await
            .expect("payment_items")
    }

    async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.as_str()).unwrap().get_multiplexed_async_connection().await.expect("Redis")
    }

    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let mut r = self.redis_conn().await;
        redis::cmd("GET").arg(key).query_async(&mut r).await.expect("GET")
    }

    pub async fn redis_ttl_ms(&self, key: &str) -> i64 {
        let mut r = self.redis_conn().await;
        redis::cmd("PTTL").arg(key).query_async(&mut r).await.expect("PTTL")
    }

    /// Every event on the three old topics that concerns `payments`, in partition order per key, read with
    /// `isolation` (`read_committed` or `read_uncommitted`) from the beginning.
    pub async fn kafka_events(&self, isolation: &str, payments: &[&str]) -> Vec<KafkaEvent> {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Headers;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}-{isolation}-{:x}", self.tag, rand::rng().random::<u32>()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .expect("Kafka consumer");
        consumer.subscribe(&["payment-events", "stock-events", "basket-events"]).expect("subscribe");
        let mut out = Vec::new();
        let mut quiet = 0;
        // Read until the topics have been quiet for a while after the last related event.
        while quiet < 20 {
            match consumer.poll(Duration::from_millis(250)) {
                Some(Ok(m)) => {
                    let body: Value = m.payload().and_then(|p| serde_json::from_slice(p).ok()).unwrap_or(Value::Null);
                    let headers: Vec<(String, String)> = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let event_type = headers.iter().find(|(k, _)| k == "event_type").map(|(_, v)| v.clone()).unwrap_or_default();
                    let event = KafkaEvent {
                        topic: m.topic().to_string(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                        event_type,
                        headers,
                        body,
                    };
                    if payments.iter().any(|p| event.related(p)) {
                        out.push(event);
                        quiet = 0;
                    }
                }
                Some(Err(e)) => panic!("Kafka: {e}"),
                None => quiet += 1,
            }
        }
        out
    }

    /// Drops the test's databases (Kafka keeps its topics: they are the old shared names).
    pub async fn drop_all(&self) {
        let admin = postgres(&self.pg_base).await;
        for db in ["catalog", "notifications"] {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}_{db} WITH (FORCE)", self.tag)).await;
        }
        use mysql_async::prelude::Queryable;
        if let Ok(mut conn) = mysql_async::Conn::from_url(self.mysql_base.as_str()).await {
            let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", self.tag)).await;
        }
    }
}

/// `url` (`scheme://[auth@]host:port/path`) with another `host:port`.
pub fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let auth = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    format!("{scheme}://{auth}{host_port}/{path}")
}

/// `host:port` of a URL (`scheme://[auth@]host:port/…`).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("//").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

pub async fn postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("PostgreSQL");
    tokio::spawn(connection);
    client
}
