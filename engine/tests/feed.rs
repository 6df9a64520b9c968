//! The change feed: committed events in order with entity versions, from any LSN; a registered cursor
//! keeps the journal it still needs through checkpoints, and lets it go once advanced.

use std::time::Duration;

use kassa_engine::{Engine, EngineConfig, Event, FeedCursor, FeedError, ProductInput, cmd};

fn engine(dir: &std::path::Path) -> Engine {
    Engine::open(config(dir)).unwrap()
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = 1;
    cfg.pin_threads = false;
    cfg.segment_bytes_max = 4096; // many small segments
    cfg.checkpoint_interval = Duration::from_secs(3600); // checkpoints only when the test asks
    cfg
}

fn create(engine: &Engine, i: u64) -> u64 {
    let input = ProductInput {
        name: format!("p{i}"),
        description: "x".repeat(200),
        price: 100,
        stock: 1,
        category: "c".into(),
        image_url: String::new(),
    };
    let p = engine.run_blocking(cmd::create_product(input)).unwrap();
    p.id
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("shard-000").join("journal")).unwrap().count()
}

#[test]
fn subscribers_see_committed_events_in_order_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let mut sub = engine.subscribe(0, 1).unwrap();
    let ids: Vec<u64> = (0..20).map(|i| create(&engine, i)).collect();
    let update = ProductInput {
        name: "renamed".into(),
        description: String::new(),
        price: 200,
        stock: 2,
        category: "c".into(),
        image_url: String::new(),
    };
    engine.run_blocking(cmd::update_product(ids[0], update)).unwrap();

    let mut seen = Vec::new();
    while let Some(r) = sub.next_timeout(Duration::from_secs(2)).unwrap() {
        seen.push(r);
        if seen.len() == 21 {
            break;
        }
    }
    assert_eq!(seen.len(), 21);
    assert!(seen.windows(2).all(|w| w[1].lsn == w[0].lsn + 1), "in order, no gaps");
    for r in &seen {
        let Event::ProductPut { product, .. } = &r.event else { panic!("{:?}", r.event) };
        assert_eq!(product.version, r.lsn, "the entity version is the LSN of the change");
    }
    let Event::ProductPut { product, .. } = &seen[20].event else { panic!() };
    assert_eq!((product.id, product.name.as_str()), (ids[0], "renamed"));

    // A late subscriber can start in the middle.
    let mut late = engine.subscribe(0, seen[10].lsn).unwrap();
    assert_eq!(late.try_next().unwrap().unwrap().lsn, seen[10].lsn);
    engine.shutdown();
}

#[test]
fn retention_respects_registered_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.advance_feed_cursor("adapter-x", 0, 1).unwrap();
    for i in 0..60 {
        create(&engine, i);
    }
    let before = segments(dir.path());
    assert!(before > 3, "several segments written: {before}");
    // `checkpoint` returns once every shard has dropped what it may drop.
    engine.checkpoint().unwrap();
    assert_eq!(segments(dir.path()), before, "the cursor at LSN 1 keeps every segment");
    assert!(engine.subscribe(0, 1).unwrap().try_next().unwrap().is_some(), "still readable from the start");

    // Once the consumer has moved on, a checkpoint drops what nobody needs.
    let end = engine.stats().shards[0].durable_lsn;
    engine.advance_feed_cursor("adapter-x", 0, end + 1).unwrap();
    engine.checkpoint().unwrap();
    assert!(segments(dir.path()) < before, "old segments deleted after the cursor advanced");
    assert!(engine.subscribe(0, 1).and_then(|mut s| s.try_next()).is_err(), "reading removed history is a clear error");
    engine.shutdown();
    drop(engine);

    // The cursor survives a restart.
    let engine = self::engine(dir.path());
    assert_eq!(engine.feed_cursor("adapter-x", 0), FeedCursor::At(end + 1));
    assert_eq!(engine.feed_cursor("nobody", 0), FeedCursor::New);
    engine.shutdown();
}

#[test]
fn a_snapshot_then_the_feed_from_after_it_is_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let before: Vec<u64> = (0..30).map(|i| create(&engine, i)).collect();
    let snapshot = engine.snapshot(0, Some("copier")).unwrap();
    // Writes go on while the snapshot is held; the snapshot does not see them.
    let after: Vec<u64> = (30..40).map(|i| create(&engine, i)).collect();
    engine.run_blocking(cmd::delete_product(before[0])).unwrap();
    let mut copied = std::collections::BTreeMap::new();
    snapshot
        .products(&mut |p| {
            assert!(p.version <= snapshot.lsn(), "nothing newer than the snapshot's LSN");
            copied.insert(p.id, p.version);
            true
        })
        .unwrap();
    assert_eq!(copied.keys().copied().collect::<Vec<_>>(), before, "exactly the state at the snapshot");
    assert_eq!(engine.feed_cursor("copier", 0), FeedCursor::At(snapshot.lsn() + 1), "the pin is where the copy ends");

    // Following from lsn + 1 replays exactly what came after: no gap, no overlap.
    engine.checkpoint().unwrap();
    let mut sub = engine.subscribe(0, snapshot.lsn() + 1).unwrap();
    let mut state = copied;
    while let Some(r) = sub.next_timeout(Duration::from_millis(200)).unwrap() {
        match r.event {
            Event::ProductPut { product, .. } => {
                assert!(state.insert(product.id, product.version).is_none_or(|v| v < product.version));
            }
            Event::ProductDeleted { id, .. } => {
                state.remove(&id);
            }
            _ => {}
        }
    }
    let expected: Vec<u64> = before[1..].iter().chain(&after).copied().collect();
    assert_eq!(state.keys().copied().collect::<Vec<_>>(), expected);
    engine.shutdown();
}

#[tokio::test]
async fn an_async_subscriber_waits_without_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let engine = std::sync::Arc::new(engine(dir.path()));
    let mut sub = engine.subscribe(0, 1).unwrap();
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                let input = ProductInput {
                    name: format!("a{i}"),
                    description: String::new(),
                    price: 1,
                    stock: 1,
                    category: "c".into(),
                    image_url: String::new(),
                };
                engine.run(cmd::create_product(input)).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = sub.next_batch(2).await.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 2, "at least one, at most the asked number");
        seen.extend(batch);
    }
    writer.await.unwrap();
    assert!(seen.windows(2).all(|w| w[1].lsn == w[0].lsn + 1));
    assert_eq!(sub.head(), seen[4].lsn, "caught up with the durable head");
    engine.shutdown();
}

#[test]
fn a_cursor_past_the_retention_cap_is_dropped_and_its_consumer_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.feed_retention_bytes = 16 << 10; // four 4 KiB segments
    let engine = Engine::open(cfg).unwrap();
    engine.advance_feed_cursor("slow", 0, 1).unwrap();
    engine.advance_feed_cursor("keeping-up", 0, 1).unwrap();
    for i in 0..20 {
        create(&engine, i);
    }
    engine.checkpoint().unwrap();
    let (figures, dropped) = engine.feed_cursors();
    assert_eq!(dropped, 0, "under the cap: kept");
    assert!(figures.iter().all(|f| f.pinned_bytes > 0 && f.pinned_bytes <= 16 << 10), "{figures:?}");

    // One consumer keeps up, the other stays away while the journal grows past the cap.
    for i in 20..80 {
        create(&engine, i);
        engine.advance_feed_cursor("keeping-up", 0, engine.stats().shards[0].durable_lsn + 1).unwrap();
    }
    engine.checkpoint().unwrap();
    assert_eq!(engine.feed_cursor("slow", 0), FeedCursor::Dropped);
    assert!(matches!(engine.feed_cursor("keeping-up", 0), FeedCursor::At(_)));
    let (figures, dropped) = engine.feed_cursors();
    assert_eq!(dropped, 1, "counted for the alert");
    assert!(figures.iter().any(|f| f.name == "slow" && f.cursor == FeedCursor::Dropped && f.pinned_bytes == 0));
    // The journal it held is gone, and reading from its old position says a snapshot is needed.
    match engine.subscribe(0, 1) {
        Err(FeedError::NeedsSnapshot { shard: 0, requested: 1, oldest }) => assert!(oldest > 1),
        other => panic!("expected NeedsSnapshot, got {:?}", other.map(|s| s.position())),
    }
    // Re-registering (after a snapshot) pins again.
    let snapshot = engine.snapshot(0, Some("slow")).unwrap();
    assert_eq!(engine.feed_cursor("slow", 0), FeedCursor::At(snapshot.lsn() + 1));
    engine.shutdown();
}

#[test]
fn an_idle_cursor_that_pins_journal_is_dropped_after_the_age_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.feed_retention_age = Duration::ZERO;
    let engine = Engine::open(cfg).unwrap();
    engine.advance_feed_cursor("idle", 0, 1).unwrap();
    // Caught up and nothing pinned: an idle consumer is not dropped for being idle.
    engine.checkpoint().unwrap();
    assert_eq!(engine.feed_cursor("idle", 0), FeedCursor::At(1));
    for i in 0..30 {
        create(&engine, i);
    }
    engine.checkpoint().unwrap();
    assert_eq!(engine.feed_cursor("idle", 0), FeedCursor::Dropped, "pinning journal past the age cap");
    engine.shutdown();
}
