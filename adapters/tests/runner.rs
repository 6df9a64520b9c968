//! The runner against an in-memory target that can be made to fail: a mirror bootstraps from a snapshot,
//! follows the feed, survives a target that is down, dead-letters a record the target rejects, and
//! re-copies when retention dropped its cursor — ending, each time, equal to the engine's state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_adapters::{Adapters, Connect, Entity, ShardState, Target, TargetError, Tuning};
use kassa_engine::{Engine, EngineConfig, Event, FeedRecord, ProductInput, cmd, placement};
use parking_lot::Mutex;

/// What the fake target holds, shared by every shard's writer (as a database would be).
#[derive(Default)]
struct Mirror {
    /// key → (version, canonical text or None for a tombstone).
    rows: HashMap<String, (u64, Option<String>)>,
    cursors: HashMap<usize, u64>,
    /// The next this many applies fail as if the target were down.
    down_for: usize,
    /// A record the target refuses for its content.
    reject: Option<u64>,
    applies: usize,
}

impl Mirror {
    fn put(&mut self, key: String, version: u64, text: Option<String>) {
        match self.rows.get(&key) {
            Some((v, _)) if *v >= version => {}
            _ => {
                self.rows.insert(key, (version, text));
            }
        }
    }

    fn live(&self) -> BTreeMap<String, String> {
        self.rows.iter().filter_map(|(k, (_, t))| t.clone().map(|t| (k.clone(), t))).collect()
    }
}

fn render(entity: &Entity) -> String {
    match entity {
        Entity::Product(p) => format!("{}|{}|{}", p.name, p.price, p.available),
        Entity::Basket(b) => format!("{}|{}", b.id, b.lines.len()),
        Entity::Payment(p) => format!("{}|{}", p.status.as_str(), p.amount),
        Entity::Notification(n) => format!("{}|{}", n.title, n.status),
    }
}

#[derive(Clone)]
struct MemoryConnect(Arc<Mutex<Mirror>>);

struct MemoryTarget {
    mirror: Arc<Mutex<Mirror>>,
    shard: usize,
    shards: usize,
}

impl Connect for MemoryConnect {
    type Target = MemoryTarget;

    fn name(&self) -> &'static str {
        "memory"
    }

    fn schema(&self) -> String {
        "key → (version, text)".into()
    }

    async fn connect(&self, shard: usize, shards: usize) -> Result<MemoryTarget, TargetError> {
        Ok(MemoryTarget { mirror: self.0.clone(), shard, shards })
    }
}

impl Target for MemoryTarget {
    async fn cursor(&mut self) -> Result<Option<u64>, TargetError> {
        Ok(self.mirror.lock().cursors.get(&self.shard).copied())
    }

    async fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        let mut m = self.mirror.lock();
        m.applies += 1;
        if m.down_for > 0 {
            m.down_for -= 1;
            return Err(TargetError::Unavailable("connection refused".into()));
        }
        if let Some(bad) = m.reject
            && records.iter().any(|r| r.lsn == bad)
        {
            return Err(TargetError::Rejected { lsn: bad, reason: "value out of range".into() });
        }
        // All or nothing, like a transaction: build the changes, then commit them with the cursor.
        for r in records {
            match &r.event {
                Event::ProductPut { product, .. } => {
                    m.put(format!("product:{}", product.id), product.version, Some(render(&Entity::Product(product.clone()))))
                }
                Event::ProductDeleted { id, version } => m.put(format!("product:{id}"), *version, None),
                Event::BasketPut { basket, .. } => {
                    m.put(format!("basket:{}", basket.user_id), basket.version, Some(render(&Entity::Basket(basket.clone()))))
                }
                Event::BasketDeleted { user_id, version, .. } => m.put(format!("basket:{user_id}"), *version, None),
                Event::PaymentPut { payment, .. } => {
                    m.put(format!("payment:{}", payment.id), payment.version, Some(render(&Entity::Payment(payment.clone()))))
                }
                Event::NotificationPut { notification } => m.put(
                    format!("notification:{}", notification.id),
                    notification.version,
                    Some(render(&Entity::Notification(notification.clone()))),
                ),
                Event::NotificationDeleted { id, version, .. } => m.put(format!("notification:{id}"), *version, None),
                _ => {}
            }
        }
        m.cursors.insert(self.shard, next_lsn);
        Ok(())
    }

    async fn load(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        let mut m = self.mirror.lock();
        for e in entities {
            m.put(e.key(), e.version(), Some(render(e)));
        }
        Ok(())
    }

    async fn finish_load(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), TargetError> {
        let (shard, shards) = (self.shard as u32, self.shards as u32);
        let mut m = self.mirror.lock();
        let stale: Vec<String> = m
            .rows
            .iter()
            .filter(|(k, (v, t))| t.is_some() && *v <= snapshot_lsn && !present.contains(*k) && shard_of_key(k, shards) == shard)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            m.rows.insert(k, (snapshot_lsn, None));
        }
        m.cursors.insert(self.shard, snapshot_lsn + 1);
        Ok(())
    }

    async fn read_back(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        let (shard, shards) = (self.shard as u32, self.shards as u32);
        Ok(self.mirror.lock().live().into_iter().filter(|(k, _)| shard_of_key(k, shards) == shard).collect())
    }

    fn render(&self, entity: &Entity) -> Vec<(String, String)> {
        vec![(entity.key(), render(entity))]
    }
}

fn shard_of_key(key: &str, shards: u32) -> u32 {
    match key.split_once(':') {
        Some(("product", id)) => placement::shard_of_product(id.parse().unwrap_or(0), shards),
        Some(("basket", user)) => placement::shard_of_user(user, shards),
        _ => 0, // the tests make payments and notifications only on one-shard engines
    }
}

fn engine(dir: &std::path::Path, shards: usize) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.pin_threads = false;
    cfg.segment_bytes_max = 4096;
    cfg.checkpoint_interval = Duration::from_secs(3600);
    Engine::open(cfg).unwrap()
}

fn product(engine: &Engine, i: u64) -> u64 {
    let input = ProductInput {
        name: format!("p{i}"),
        description: "d".repeat(100),
        price: 100 + i as i64,
        stock: 5,
        category: "c".into(),
        image_url: String::new(),
    };
    engine.run_blocking(cmd::create_product(input)).unwrap().id
}

/// The engine's state rendered as the mirror holds it.
fn expected(engine: &Engine) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for shard in 0..engine.shards() {
        let s = engine.snapshot(shard, None).unwrap();
        s.products(&mut |p| out.insert(format!("product:{}", p.id), render(&Entity::Product(p))).is_none()).unwrap();
        s.baskets(&mut |b| out.insert(format!("basket:{}", b.user_id), render(&Entity::Basket(b))).is_none()).unwrap();
        s.payments(&mut |p| out.insert(format!("payment:{}", p.id), render(&Entity::Payment(p))).is_none()).unwrap();
        s.notifications(&mut |n| out.insert(format!("notification:{}", n.id), render(&Entity::Notification(n))).is_none()).unwrap();
    }
    out
}

/// Waits (on observable state, bounded) until every shard's mirror has caught up with its durable head.
fn caught_up(adapters: &Adapters, engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let heads: Vec<u64> = engine.stats().shards.iter().map(|s| s.durable_lsn).collect();
        let status = &adapters.status()[0];
        if status.shards.iter().all(|s| s.state == ShardState::Following && s.cursor == heads[s.shard] + 1) {
            return;
        }
        assert!(Instant::now() < deadline, "not caught up: {status:?} heads {heads:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tuning() -> Tuning {
    Tuning { batch_max: 7, linger_ms: 1, retry_min_ms: 1, retry_max_ms: 20 }
}

#[test]
fn a_new_mirror_copies_the_snapshot_then_follows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2);
    let ids: Vec<u64> = (0..20).map(|i| product(&engine, i)).collect();
    engine.run_blocking(cmd::add_item("ann", ids[0], 2)).unwrap();
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let mut adapters = Adapters::new(&engine, dir.path(), 1).unwrap();
    adapters.spawn(MemoryConnect(mirror.clone()), tuning());
    caught_up(&adapters, &engine);
    assert_eq!(mirror.lock().live(), expected(&engine));
    assert!(adapters.status()[0].shards.iter().all(|s| s.bootstraps_total == 1));

    for i in 20..40 {
        product(&engine, i);
    }
    engine.run_blocking(cmd::delete_product(ids[1])).unwrap();
    engine.run_blocking(cmd::remove_item("ann", ids[0])).unwrap();
    caught_up(&adapters, &engine);
    assert_eq!(mirror.lock().live(), expected(&engine), "deletes and edits followed");
    let verified = tokio::runtime::Runtime::new().unwrap().block_on(adapters.verify(Duration::from_secs(5)));
    assert!(verified[0].is_clean(), "{:?}", verified[0]);
    // A difference the runner did not make is found and named.
    mirror.lock().rows.insert(format!("product:{}", ids[2]), (u64::MAX, Some("tampered".into())));
    let verified = tokio::runtime::Runtime::new().unwrap().block_on(adapters.verify(Duration::from_secs(5)));
    let differences: Vec<_> = verified[0].shards.iter().flat_map(|s| s.differences.clone()).collect();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!((differences[0].key.clone(), differences[0].target.as_deref()), (format!("product:{}", ids[2]), Some("tampered")));
    let status = &adapters.status()[0];
    assert!(status.shards.iter().all(|s| s.lag_lsn == 0 && s.lag_seconds == 0.0), "{status:?}");
    adapters.stop(Duration::from_secs(5));
    assert!(adapters.status()[0].shards.iter().all(|s| s.state == ShardState::Stopped));
    engine.shutdown();
}

#[test]
fn a_target_that_is_down_is_caught_up_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1);
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let mut adapters = Adapters::new(&engine, dir.path(), 1).unwrap();
    adapters.spawn(MemoryConnect(mirror.clone()), tuning());
    caught_up(&adapters, &engine);
    mirror.lock().down_for = 5;
    // Writes go on while the target is down: the engine does not wait for it.
    for i in 0..30 {
        product(&engine, i);
    }
    caught_up(&adapters, &engine);
    assert_eq!(mirror.lock().live(), expected(&engine));
    let status = &adapters.status()[0].shards[0];
    assert!(status.retries_total >= 5, "{status:?}");
    assert_eq!(status.bootstraps_total, 1, "resumed from the target's cursor, not re-copied");
    engine.shutdown();
}

#[test]
fn a_rejected_record_is_dead_lettered_and_the_rest_applied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1);
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let mut adapters = Adapters::new(&engine, dir.path(), 1).unwrap();
    adapters.spawn(MemoryConnect(mirror.clone()), tuning());
    caught_up(&adapters, &engine);
    let first = engine.stats().shards[0].durable_lsn + 1;
    // The third product's record will be refused.
    mirror.lock().reject = Some(first + 2);
    let ids: Vec<u64> = (0..6).map(|i| product(&engine, i)).collect();
    caught_up(&adapters, &engine);
    let live = mirror.lock().live();
    assert!(!live.contains_key(&format!("product:{}", ids[2])), "the rejected record is not applied");
    assert_eq!(live.len(), 5, "every other record is");
    let letters = adapters.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].lsn, letters[0].event.as_str(), letters[0].reason.as_str()), (first + 2, "product_put", "value out of range"));
    assert_eq!(adapters.status()[0].dead_letters(), 1);
    engine.shutdown();
}

#[test]
fn a_mirror_whose_cursor_fell_off_retention_copies_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1);
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let ids: Vec<u64> = (0..5).map(|i| product(&engine, i)).collect();
    {
        let mut adapters = Adapters::new(&engine, dir.path(), 1).unwrap();
        adapters.spawn(MemoryConnect(mirror.clone()), tuning());
        caught_up(&adapters, &engine);
        adapters.stop(Duration::from_secs(5));
    }
    // While the adapter is away, writes (and a delete) go on and the journal it needs is dropped.
    for i in 5..60 {
        product(&engine, i);
    }
    engine.run_blocking(cmd::delete_product(ids[0])).unwrap();
    engine.advance_feed_cursor("adapter-memory", 0, u64::MAX - 1).unwrap(); // as if retention had let it go
    engine.checkpoint().unwrap();
    assert!(engine.subscribe(0, mirror.lock().cursors[&0]).is_err(), "the mirror's position is gone from the journal");

    let mut adapters = Adapters::new(&engine, dir.path(), 1).unwrap();
    adapters.spawn(MemoryConnect(mirror.clone()), tuning());
    caught_up(&adapters, &engine);
    assert_eq!(mirror.lock().live(), expected(&engine), "re-copied, and the deleted product is gone");
    assert_eq!(adapters.status()[0].shards[0].bootstraps_total, 1);
    engine.shutdown();
}
