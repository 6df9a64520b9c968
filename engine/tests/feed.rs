//! The change feed: committed events in order with entity versions, from any LSN; a registered cursor
//! keeps the journal it still needs through checkpoints, and lets it go once advanced.

use std::time::Duration;

use kassa_engine::{Engine, EngineConfig, Event, ProductInput, cmd};

fn engine(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = 1;
    cfg.pin_threads = false;
    cfg.segment_bytes_max = 4096; // many small segments
    cfg.checkpoint_interval = Duration::from_secs(3600); // checkpoints only when the test asks
    Engine::open(cfg).unwrap()
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
    assert_eq!(engine.feed_cursor("adapter-x", 0), end + 1);
    engine.shutdown();
}
