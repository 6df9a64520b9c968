//! Product reads come from the in-memory view: it must answer exactly what the stores hold, before a
//! checkpoint, after one, and after a restart that loads the stores and replays the journal's tail.

use kassa_engine::{Engine, EngineConfig, Page, Product, ProductInput, ProductQuery, cmd};

fn open(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = 2;
    cfg.pin_threads = false;
    Engine::open(cfg).expect("engine opens")
}

fn input(name: &str, category: &str, price: i64) -> ProductInput {
    ProductInput { name: name.into(), price, stock: 5, category: category.into(), ..ProductInput::default() }
}

/// Every product the stores hold (a full scan of the catalog store), by id.
fn in_the_stores(engine: &Engine) -> Vec<Product> {
    let mut all = Vec::new();
    engine
        .for_each_product(&mut |p| {
            all.push(p);
            true
        })
        .expect("scan");
    all.sort_by_key(|p| p.id);
    all
}

/// What the view answers agrees with the stores, for point reads and for a listing.
fn agree(engine: &Engine, expected: &[Product], deleted: &[u64]) {
    assert_eq!(in_the_stores(engine), expected, "the stores hold what was written");
    for p in expected {
        assert_eq!(engine.product(p.id).expect("read").as_deref(), Some(p), "product {} from the view", p.id);
    }
    for id in deleted {
        assert_eq!(engine.product(*id).expect("read"), None, "deleted product {id} is gone from the view");
    }
    let books: Vec<&Product> = expected.iter().filter(|p| p.category == "books").collect();
    let listed = engine.products(&ProductQuery::Category("books".into()), Page::first(1000)).expect("listing");
    assert_eq!(listed.iter().map(|p| &**p).collect::<Vec<_>>(), books, "a category listing takes its records from the view");
}

#[test]
fn the_view_answers_what_the_stores_hold_across_checkpoints_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..40 {
        let category = if i % 2 == 0 { "books" } else { "games" };
        ids.push(engine.run_blocking(cmd::create_product(input(&format!("p{i}"), category, 100 + i))).expect("created").id);
    }
    // Updates (one moves category), and deletes.
    for &id in &ids[..10] {
        engine.run_blocking(cmd::update_product(id, input(&format!("renamed {id}"), "books", 999))).expect("updated");
    }
    let deleted: Vec<u64> = ids[30..35].to_vec();
    for &id in &deleted {
        engine.run_blocking(cmd::delete_product(id)).expect("deleted");
    }
    let expected = in_the_stores(&engine);
    assert_eq!(expected.len(), 35);
    agree(&engine, &expected, &deleted);

    // Into the stores, then more writes that only the journal has.
    engine.checkpoint().expect("checkpoint");
    let late = engine.run_blocking(cmd::create_product(input("late", "books", 5))).expect("created");
    engine.run_blocking(cmd::update_product(ids[11], input("late rename", "games", 7))).expect("updated");
    engine.run_blocking(cmd::delete_product(ids[12])).expect("deleted");
    let mut deleted = deleted;
    deleted.push(ids[12]);
    let expected = in_the_stores(&engine);
    assert!(expected.contains(&late));
    agree(&engine, &expected, &deleted);
    engine.shutdown();
    drop(engine);

    // After a restart the view is loaded from the stores plus the replayed tail.
    let engine = open(dir.path());
    agree(&engine, &expected, &deleted);
    engine.shutdown();
}
