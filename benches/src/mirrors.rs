//! W9 and W10 for the adapters: a private copy of the old estate's targets for the run, and the lag of each
//! mirror (commit in the engine to commit in the target) sampled from `GET /admin/adapters`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::BenchError;
use crate::hist::{Latencies, LatencySummary};
use crate::http::parse;
use crate::workloads::HttpTarget;

/// The databases the run's mirrors write, dropped and created afresh each run (never the old estate's own
/// names, so a benchmark cannot touch a real `product_service`).
const PG_CATALOG_DB: &str = "kassa_bench_catalog";
const PG_NOTIFICATIONS_DB: &str = "kassa_bench_notifications";
const MARIADB_DB: &str = "kassa_bench_payments";
/// Redis database index of the run's basket mirror (the Redis reference uses the URL's own).
const REDIS_DB: u8 = 12;

/// `scheme://authority/path` with the path replaced by `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    if scheme.is_empty() { format!("{authority}/{db}") } else { format!("{scheme}://{authority}/{db}") }
}

/// Where the run's four mirrors write.
#[derive(Clone, Debug)]
pub struct MirrorEstate {
    pub pg_catalog: String,
    pub pg_notifications: String,
    pub mariadb: String,
    pub redis: String,
    pub brokers: String,
    /// The Kafka producer's transactional id (a new one per run, so no earlier run's cursor applies).
    pub transactional_id: String,
}

impl MirrorEstate {
    /// Empties the run's databases; `tag` makes the Kafka transactional id unique to the run.
    pub async fn fresh(pg_url: &str, mariadb_url: &str, redis_url: &str, brokers: &str, tag: &str) -> Result<MirrorEstate, BenchError> {
        let pg = crate::refs::pg_connect(pg_url).await?;
        for db in [PG_CATALOG_DB, PG_NOTIFICATIONS_DB] {
            // One statement each: neither may run inside the implicit transaction of a multi-statement query.
            for sql in [format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"), format!("CREATE DATABASE {db}")] {
                pg.batch_execute(&sql).await.map_err(|e| {
                    let why = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned());
                    BenchError::Store(format!("postgres: {sql}: {why}"))
                })?;
            }
        }
        {
            use mysql_async::prelude::Queryable;
            let store = |e: mysql_async::Error| BenchError::Store(format!("mariadb: recreating {MARIADB_DB}: {e}"));
            let mut conn = mysql_async::Conn::from_url(mariadb_url).await.map_err(store)?;
            conn.query_drop(format!("DROP DATABASE IF EXISTS {MARIADB_DB}")).await.map_err(store)?;
            conn.query_drop(format!("CREATE DATABASE {MARIADB_DB}")).await.map_err(store)?;
            conn.disconnect().await.map_err(store)?;
        }
        let redis = with_db(redis_url, &REDIS_DB.to_string());
        let store = |e: redis::RedisError| BenchError::Store(format!("redis: flushing database {REDIS_DB}: {e}"));
        let client = redis::Client::open(redis.as_str()).map_err(store)?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(store)?;
        let () = redis::cmd("FLUSHDB").query_async(&mut conn).await.map_err(store)?;
        Ok(MirrorEstate {
            pg_catalog: with_db(pg_url, PG_CATALOG_DB),
            pg_notifications: with_db(pg_url, PG_NOTIFICATIONS_DB),
            mariadb: with_db(mariadb_url, MARIADB_DB),
            redis,
            brokers: brokers.to_owned(),
            transactional_id: format!("kassa-bench-{tag}"),
        })
    }

    /// The `[adapters.*]` sections that switch all four mirrors on.
    pub fn toml(&self) -> String {
        format!(
            "\n[adapters.postgres]\nurl = \"{}\"\nnotifications_url = \"{}\"\n\n[adapters.mariadb]\nurl = \"{}\"\n\n\
             [adapters.redis]\nurl = \"{}\"\n\n[adapters.kafka]\nbrokers = \"{}\"\ntransactional_id = \"{}\"\n",
            self.pg_catalog, self.pg_notifications, self.mariadb, self.redis, self.brokers, self.transactional_id
        )
    }
}

/// Where one shard's mirror stands, as `GET /admin/adapters` says.
#[derive(Clone, Debug, Deserialize)]
pub struct ShardPosition {
    pub shard: usize,
    pub state: String,
    /// The next LSN the target needs.
    pub cursor: u64,
    /// The shard's durable LSN when the status was read.
    pub head: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AdapterPositions {
    pub name: String,
    pub shards: Vec<ShardPosition>,
}

#[derive(Deserialize)]
struct StatusPage {
    adapters: Vec<AdapterPositions>,
}

impl AdapterPositions {
    /// Every shard follows the feed and the target holds everything durable.
    pub fn caught_up(&self) -> bool {
        self.shards.iter().all(|s| s.state == "following" && s.cursor > s.head)
    }
}

/// One adapter's lag over a measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterLag {
    pub adapter: String,
    /// Commit in the engine to commit in the target, in microseconds.
    pub lag: LatencySummary,
    /// Samples the target had not reached when the bench stopped waiting (0 in a healthy run).
    pub unresolved: u64,
}

/// Turns successive status reads into lag samples. Each read notes, per adapter and shard, the durable head
/// if it moved; a later read whose target cursor has passed that head resolves the sample, and its lag is
/// the time between the two reads. Both ends are quantised the same way, so the error is at most one
/// polling interval either way; a head the target already holds at the read that first sees it counts 0.
#[derive(Default)]
pub struct LagTracker {
    pending: BTreeMap<(String, usize), VecDeque<(Duration, u64)>>,
    sampled_head: BTreeMap<(String, usize), u64>,
    lags: BTreeMap<String, Latencies>,
    /// Status reads made.
    pub reads: u64,
}

impl LagTracker {
    /// One status read, made `at` after the tracker started.
    pub fn observe(&mut self, at: Duration, adapters: &[AdapterPositions]) {
        self.reads += 1;
        for a in adapters {
            let lags = self.lags.entry(a.name.clone()).or_default();
            for s in &a.shards {
                let key = (a.name.clone(), s.shard);
                let queue = self.pending.entry(key.clone()).or_default();
                let last = self.sampled_head.entry(key).or_insert(0);
                if s.head > *last {
                    *last = s.head;
                    queue.push_back((at, s.head));
                }
                while let Some(&(seen, head)) = queue.front() {
                    if s.cursor <= head {
                        break;
                    }
                    queue.pop_front();
                    lags.record(at.saturating_sub(seen));
                }
            }
        }
    }

    /// Samples still waiting for their target.
    pub fn unresolved(&self) -> u64 {
        self.pending.values().map(|q| q.len() as u64).sum()
    }

    /// Per adapter, by name.
    pub fn summary(&self) -> Vec<AdapterLag> {
        self.lags
            .iter()
            .map(|(name, lags)| AdapterLag {
                adapter: name.clone(),
                lag: lags.summary(),
                unresolved: self.pending.iter().filter(|((n, _), _)| n == name).map(|(_, q)| q.len() as u64).sum(),
            })
            .collect()
    }

    /// Every adapter's samples together.
    pub fn overall(&self) -> LatencySummary {
        let mut all = Latencies::new();
        for l in self.lags.values() {
            all.merge(l);
        }
        all.summary()
    }

    pub fn figures(&self) -> LagFigures {
        LagFigures { overall: self.overall(), unresolved: self.unresolved(), reads: self.reads, adapters: self.summary() }
    }
}

/// The lag of all four mirrors over one measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LagFigures {
    /// Every adapter's samples together.
    pub overall: LatencySummary,
    pub unresolved: u64,
    /// Status reads made (the sampling resolution is the run's interval between them).
    pub reads: u64,
    pub adapters: Vec<AdapterLag>,
}

/// W9 and W10 of the adapters: a restart of the run's data directory with all four mirrors on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterRun {
    /// Restart to every mirror caught up: the snapshot copy of everything the run had written.
    pub bootstrap_s: Option<f64>,
    pub poll_interval_ms: f64,
    /// Lag under closed-loop W4 (the adapters' worst case: the engine at its maximum).
    pub at_max: Option<LagFigures>,
    /// Lag under open-loop W4 at half of W4's maximum without adapters (the W9 target).
    pub at_half: Option<LagFigures>,
    /// `POST /admin/adapters/verify` after the load: every mirror equal to the engine.
    pub verify_clean: Option<bool>,
    pub verify_differences: Option<u64>,
    pub notes: Vec<String>,
}

/// Reads every adapter's position.
pub async fn positions(target: &HttpTarget) -> Result<Vec<AdapterPositions>, BenchError> {
    let mut client = target.client();
    let r = client.get("/admin/adapters").await.map_err(|e| BenchError::Process(format!("GET /admin/adapters: {e}")))?;
    let page: StatusPage = parse(&r.body).map_err(|e| BenchError::Process(format!("GET /admin/adapters: {e}")))?;
    Ok(page.adapters)
}

/// Waits until `expected` adapters follow with nothing durable left to copy; returns how long it took.
pub async fn caught_up(target: &HttpTarget, expected: usize, limit: Duration) -> Result<Duration, BenchError> {
    let started = Instant::now();
    loop {
        let all = positions(target).await?;
        if all.len() == expected && all.iter().all(AdapterPositions::caught_up) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            let states: Vec<String> = all
                .iter()
                .map(|a| format!("{}: {:?}", a.name, a.shards.iter().map(|s| (&s.state, s.cursor, s.head)).collect::<Vec<_>>()))
                .collect();
            return Err(BenchError::Process(format!("adapters not caught up after {limit:?}: {}", states.join("; "))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task that reads the adapters' status every `interval` until told to stop, then until every sample
/// is resolved or `drain` has passed.
pub struct LagSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<LagTracker, BenchError>>,
}

impl LagSampler {
    pub fn start(target: &HttpTarget, interval: Duration, drain: Duration) -> LagSampler {
        let (stop, mut stopped) = watch::channel(false);
        let target = target.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tracker = LagTracker::default();
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut drain_until = None;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed(), if drain_until.is_none() => {}
                }
                if drain_until.is_none() && *stopped.borrow() {
                    drain_until = Some(Instant::now() + drain);
                }
                let read = positions(&target).await?;
                tracker.observe(started.elapsed(), &read);
                if let Some(until) = drain_until
                    && (tracker.unresolved() == 0 || Instant::now() >= until)
                {
                    return Ok(tracker);
                }
            }
        });
        LagSampler { stop, task }
    }

    /// The load has ended: waits for the samples still in flight, and returns them all.
    pub async fn finish(self) -> Result<LagTracker, BenchError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| BenchError::Process(format!("lag sampler: {e}")))?
    }
}
