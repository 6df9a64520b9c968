//! Redis: baskets mirrored into the old basket service's `basket:<user_id>` keys (seed-contract §3.4), in
//! the database the URL names, as the old caches read them.
//!
//! One Lua script per batch (`apply.lua` beside this file) compares each basket's version with its version
//! key, writes only what is newer, and sets the shard's cursor key, all atomically. A standalone Redis
//! (or a primary with replicas) is the goal, not Redis Cluster: one script touches the keys of many users
//! and the shard's cursor, which live in many hash slots.

mod basket_json;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Script, ScriptInvocation};
use kassa_engine::placement::shard_of_user;
use kassa_engine::{Basket, Currency, Event, FeedRecord, now_micros};

use crate::config::RedisConfig;
use crate::{Connect, Entity, Target, TargetError};
use basket_json::basket_json;

const APPLY_SCRIPT: &str = include_str!("apply.lua");

/// How long a version key lives past the basket it guards (and a tombstone past its deletion), at least.
/// A replayed record is never older than what the feed's retention keeps (a cursor that falls further
/// behind is bootstrapped from a snapshot instead), so a week outlives any replay; after that the key
/// may go, since an expired basket is never written again.
const VERSION_KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Baskets per script when a bootstrap loads or removes many: each script stays short, so Redis (which
/// runs one script at a time) keeps answering the old readers in between.
const OPS_PER_SCRIPT: usize = 256;

/// Keys asked per `SCAN` step.
const SCAN_COUNT: usize = 1000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

fn basket_key(user_id: &str) -> String {
    format!("basket:{user_id}")
}

fn version_key(user_id: &str) -> String {
    format!("kassa:version:basket:{user_id}")
}

fn cursor_key(shard: usize) -> String {
    format!("kassa:cursor:{shard}")
}

/// Opens the Redis mirror of each shard.
#[derive(Clone, Debug)]
pub struct RedisConnect {
    url: String,
    currency: Currency,
}

impl RedisConnect {
    pub fn new(cfg: &RedisConfig) -> RedisConnect {
        RedisConnect { url: cfg.url.clone(), currency: Currency::USD }
    }

    /// The shop currency, in which basket prices are kept (baskets carry none of their own; default USD).
    pub fn with_currency(mut self, currency: Currency) -> RedisConnect {
        self.currency = currency;
        self
    }
}

/// One shard's writer into Redis.
pub struct RedisTarget {
    client: Client,
    /// Dropped after any error and opened again on the next call, so an outage heals by itself.
    conn: Option<MultiplexedConnection>,
    script: Script,
    shard: usize,
    shards: u32,
    currency: Currency,
}

impl Connect for RedisConnect {
    type Target = RedisTarget;

    fn name(&self) -> &'static str {
        "redis"
    }

    fn schema(&self) -> String {
        format!(
            "# Kassa's Redis mirror (the old basket service's keys), in the database the URL names.\n\
             basket:<user_id>                string  the basket's JSON (seed-contract §3.4); expires at its expires_at\n\
             kassa:version:basket:<user_id>  string  version (LSN) of the last write; lives {} days past the basket or its deletion\n\
             kassa:cursor:<shard>            string  the shard's next LSN, set by the same script as the data\n",
            VERSION_KEEP_MS / (24 * 60 * 60 * 1000)
        )
    }

    async fn connect(&self, shard: usize, shards: usize) -> Result<RedisTarget, TargetError> {
        let client = Client::open(self.url.as_str()).map_err(|e| TargetError::Unavailable(format!("Redis URL: {e}")))?;
        let shards = u32::try_from(shards).map_err(|_| TargetError::Unavailable(format!("{shards} shards is too many")))?;
        let mut target = RedisTarget { client, conn: None, script: Script::new(APPLY_SCRIPT), shard, shards, currency: self.currency };
        let mut conn = target.conn().await?;
        let loaded = target.script.prepare_invoke().load_async(&mut conn).await;
        target.checked(loaded)?;
        Ok(target)
    }
}

/// One basket write of a script.
struct Op {
    user_id: String,
    kind: &'static str,
    version: u64,
    body: Vec<u8>,
    /// Unix milliseconds (`put` only).
    expires_ms: i64,
}

impl Op {
    fn put(basket: &Basket, currency: Currency) -> Op {
        Op {
            user_id: basket.user_id.clone(),
            kind: "put",
            version: basket.version,
            body: basket_json(basket, currency),
            expires_ms: basket.expires_at.div_euclid(1000),
        }
    }

    fn delete(user_id: &str, version: u64, kind: &'static str) -> Op {
        Op { user_id: user_id.to_string(), kind, version, body: Vec::new(), expires_ms: 0 }
    }
}

/// The last op of each user among `ops` (a basket's record carries its whole state), in version order so
/// that a script does the same thing every time it is sent.
fn last_per_user(ops: impl Iterator<Item = Op>) -> Vec<Op> {
    let mut last: HashMap<String, Op> = HashMap::new();
    for op in ops {
        match last.get(&op.user_id) {
            Some(held) if held.version > op.version => {}
            _ => {
                last.insert(op.user_id.clone(), op);
            }
        }
    }
    let mut ops: Vec<Op> = last.into_values().collect();
    ops.sort_by_key(|op| op.version);
    ops
}

impl RedisTarget {
    async fn conn(&mut self) -> Result<MultiplexedConnection, TargetError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(RESPONSE_TIMEOUT);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| TargetError::Unavailable(format!("Redis: {e}")))?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Maps a Redis error to "unavailable" and forgets the connection it came on.
    fn checked<T>(&mut self, result: ::redis::RedisResult<T>) -> Result<T, TargetError> {
        result.map_err(|e| {
            self.conn = None;
            TargetError::Unavailable(format!("Redis: {e}"))
        })
    }

    fn owns(&self, user_id: &str) -> bool {
        shard_of_user(user_id, self.shards) as usize == self.shard
    }

    fn invocation(&self, ops: &[Op], cursor: Option<u64>) -> ScriptInvocation<'_> {
        let mut invocation = self.script.prepare_invoke();
        invocation.key(cursor_key(self.shard)).arg(cursor.map_or_else(String::new, |c| c.to_string())).arg(VERSION_KEEP_MS);
        for op in ops {
            invocation.key(basket_key(&op.user_id)).key(version_key(&op.user_id));
            invocation.arg(op.kind).arg(op.version).arg(op.body.as_slice()).arg(op.expires_ms);
        }
        invocation
    }

    /// Runs the script over `ops` in chunks, all in one pipeline; `cursor` goes with the last chunk.
    async fn run(&mut self, ops: &[Op], cursor: Option<u64>) -> Result<(), TargetError> {
        let mut pipe = ::redis::pipe();
        pipe.load_script(&self.script).ignore();
        let chunks: Vec<&[Op]> = if ops.is_empty() { vec![&[]] } else { ops.chunks(OPS_PER_SCRIPT).collect() };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            pipe.invoke_script(&self.invocation(chunk, if i == last { cursor } else { None })).ignore();
        }
        let mut conn = self.conn().await?;
        let result: ::redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        self.checked(result)
    }

    /// Every `basket:*` key of this shard.
    async fn own_keys(&mut self) -> Result<Vec<String>, TargetError> {
        let mut conn = self.conn().await?;
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let step: ::redis::RedisResult<(u64, Vec<Vec<u8>>)> =
                ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg("basket:*").arg("COUNT").arg(SCAN_COUNT).query_async(&mut conn).await;
            let (next, batch) = self.checked(step)?;
            for key in batch {
                // Keys that are not UTF-8 are no user's basket.
                let Ok(key) = String::from_utf8(key) else { continue };
                if key.strip_prefix("basket:").is_some_and(|user| self.owns(user)) {
                    keys.push(key);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

impl Target for RedisTarget {
    async fn cursor(&mut self) -> Result<Option<u64>, TargetError> {
        let mut conn = self.conn().await?;
        let value: ::redis::RedisResult<Option<String>> = ::redis::cmd("GET").arg(cursor_key(self.shard)).query_async(&mut conn).await;
        match self.checked(value)? {
            None => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| TargetError::Unavailable(format!("Redis cursor key holds '{text}', not an LSN")))
            }
        }
    }

    async fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        let currency = self.currency;
        let ops = records.iter().filter_map(|r| match &r.event {
            Event::BasketPut { basket, .. } => Some(Op::put(basket, currency)),
            Event::BasketDeleted { user_id, version, .. } => Some(Op::delete(user_id, *version, "del")),
            _ => None,
        });
        let ops = last_per_user(ops);
        // One script: the batch and its cursor commit together.
        let mut conn = self.conn().await?;
        let result: ::redis::RedisResult<i64> = self.invocation(&ops, Some(next_lsn)).invoke_async(&mut conn).await;
        self.checked(result).map(|_| ())
    }

    async fn load(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        let currency = self.currency;
        let ops = last_per_user(entities.iter().filter_map(|e| match e {
            Entity::Basket(b) => Some(Op::put(b, currency)),
            _ => None,
        }));
        if ops.is_empty() {
            return Ok(());
        }
        self.run(&ops, None).await
    }

    async fn finish_load(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), TargetError> {
        let keys = self.own_keys().await?;
        let gone: Vec<Op> = keys
            .iter()
            .filter(|key| !present.contains(*key))
            .filter_map(|key| key.strip_prefix("basket:"))
            .map(|user_id| Op::delete(user_id, snapshot_lsn, "gone"))
            .collect();
        // The removals are version-guarded and repeatable; the cursor moves with the last of them, so a
        // bootstrap cut short is simply done again.
        self.run(&gone, Some(snapshot_lsn + 1)).await
    }

    async fn read_back(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        let keys = self.own_keys().await?;
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(SCAN_COUNT) {
            let mut pipe = ::redis::pipe();
            for key in chunk {
                pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
            }
            let mut conn = self.conn().await?;
            let replies: ::redis::RedisResult<Vec<(Option<Vec<u8>>, i64)>> = pipe.query_async(&mut conn).await;
            for (key, (value, ttl)) in chunk.iter().zip(self.checked(replies)?) {
                // Gone between the scan and the read: expired, so not held.
                let Some(value) = value else { continue };
                let mut text = String::from_utf8_lossy(&value).into_owned();
                if ttl == -1 {
                    text.push_str(" (never expires)");
                }
                out.insert(key.clone(), text);
            }
        }
        Ok(out)
    }

    fn render(&self, entity: &Entity) -> Vec<(String, String)> {
        let Entity::Basket(b) = entity else { return Vec::new() };
        // An expired basket is not held: its key expired (or was never written).
        if b.expires_at <= now_micros() {
            return Vec::new();
        }
        vec![(basket_key(&b.user_id), String::from_utf8_lossy(&basket_json(b, self.currency)).into_owned())]
    }
}
