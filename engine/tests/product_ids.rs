//! Product ids come from one engine-wide sequence: handed out in creation order whatever the shard count,
//! continued after a restart, and moved past ids given explicitly (seeding, imports).

use kassa_engine::{Cmd, Engine, EngineConfig, IdempotencyKey, Product, ProductInput, cmd};

fn open(dir: &std::path::Path, shards: usize) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.pin_threads = false;
    Engine::open(cfg).expect("engine opens")
}

fn input(name: &str) -> ProductInput {
    ProductInput { name: name.into(), price: 100, stock: 5, ..ProductInput::default() }
}

fn create(engine: &Engine, command: Cmd<Product>) -> u64 {
    engine.run_blocking(command).expect("created").id
}

fn ids_follow_creation_order(shards: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), shards);
    let first: Vec<u64> = (0..10).map(|i| create(&engine, cmd::create_product(input(&format!("p{i}"))))).collect();
    assert_eq!(first, (1..=10).collect::<Vec<u64>>(), "one sequence across {shards} shards, as bigserial");
    // Explicit ids move the sequence past them.
    create(&engine, cmd::create_product_with_id(20, input("seeded")));
    assert_eq!(create(&engine, cmd::create_product(input("after seed"))), 21);
    engine.shutdown();
    drop(engine);

    let engine = open(dir.path(), shards);
    let after: Vec<u64> = (0..5).map(|i| create(&engine, cmd::create_product(input(&format!("q{i}"))))).collect();
    assert_eq!(after, (22..27).collect::<Vec<u64>>(), "continued after a restart");

    // With an idempotency key the id is the next one its shard owns: still increasing, and a retry is
    // answered with the first product, not a second one.
    let keyed = |key: &str| {
        let key = IdempotencyKey { scope: "admin".into(), key: key.into(), fingerprint: 7 };
        cmd::create_product(input("keyed")).idempotent(Some(key))
    };
    let mut last = 26;
    for key in ["a", "b", "c", "d"] {
        let id = create(&engine, keyed(key));
        assert!(id > last, "keyed ids keep increasing: {id} after {last}");
        // A retry also draws (and skips) one id of the key's shard: at most two rounds of shards apart.
        assert!(id - last <= 2 * shards as u64, "small gaps only: {id} after {last}");
        assert_eq!(create(&engine, keyed(key)), id, "the retry gets the first outcome");
        last = id.max(last);
    }
    engine.shutdown();
}

#[test]
fn two_shards() {
    ids_follow_creation_order(2);
}

#[test]
fn three_shards() {
    ids_follow_creation_order(3);
}
