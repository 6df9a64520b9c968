//! 500 concurrent buyers, one product with 100 units, two shards: exactly 100 completed payments, stock
//! 0 available / 100 sold, and every other buyer gets a clear out-of-stock failure.

use std::sync::Arc;

use kassa_engine::{Durability, Engine, EngineConfig, ErrorKind, PaymentInput, PaymentStatus, ProductInput, Refusal, cmd};

fn open(dir: &std::path::Path, shards: usize) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.durability = Durability::Sync;
    cfg.pin_threads = false;
    Engine::open(cfg).expect("engine opens")
}

fn product(name: &str, price: i64, stock: i64) -> ProductInput {
    ProductInput { name: name.into(), description: String::new(), price, stock, category: "Flash".into(), image_url: String::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_buyers_one_hundred_units() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 2);
    let p = engine.run(cmd::create_product(product("Console", 49_999, 100))).await.unwrap();
    let buyers = 500;
    let mut tasks = Vec::new();
    let engine = Arc::new(engine);
    for i in 0..buyers {
        let engine = engine.clone();
        let product_id = p.id;
        tasks.push(tokio::spawn(async move {
            let user = format!("buyer-{i}");
            engine.run(cmd::add_item(user.clone(), product_id, 1)).await?;
            let input = PaymentInput::new(user, "credit_card", "stripe");
            let pay = engine.run(cmd::create_payment(input)).await?;
            engine.run(cmd::process_payment(pay.id, "pi")).await
        }));
    }
    let mut completed = 0;
    let mut out_of_stock = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(pay) => {
                assert_eq!(pay.status, PaymentStatus::Completed);
                completed += 1;
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::InsufficientStock, "a clear out-of-stock failure, got {e:?}");
                assert!(e.message.contains("insufficient stock") || e.message.contains("not available"), "{}", e.message);
                // What was refused, typed: the product, one unit asked for, fewer for sale.
                match e.refusal {
                    Some(Refusal::InsufficientStock { product_id, requested, available }) => {
                        assert_eq!((product_id, requested), (p.id, 1));
                        assert!(available < requested, "{available}");
                    }
                    other => panic!("a typed refusal, got {other:?}"),
                }
                out_of_stock += 1;
            }
        }
    }
    assert_eq!(completed, 100);
    assert_eq!(out_of_stock, buyers - 100);
    let p = engine.product(p.id).unwrap().unwrap();
    assert_eq!((p.available, p.reserved, p.sold), (0, 0, 100));
    let mut completed_in_store = 0;
    engine
        .for_each_payment(&mut |pay| {
            if pay.status == PaymentStatus::Completed {
                completed_in_store += 1;
            }
            true
        })
        .unwrap();
    assert_eq!(completed_in_store, 100);
    engine.shutdown();
}

/// Async durability answers before the sync; a clean shutdown still makes everything durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_mode_answers_early_and_keeps_everything_on_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.shards = 2;
    cfg.durability = Durability::Async;
    cfg.pin_threads = false;
    let engine = Engine::open(cfg.clone()).unwrap();
    let p = engine.run(cmd::create_product(product("Lamp", 1_999, 50))).await.unwrap();
    // Stores only ever hold durable events, so in async mode a read may trail a reply by a sync cycle.
    let visible_by = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while engine.product(p.id).unwrap().is_none() {
        assert!(std::time::Instant::now() < visible_by, "visible within a sync cycle or two");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for i in 0..40 {
        engine.run(cmd::add_item(format!("u{i}"), p.id, 1)).await.unwrap();
    }
    engine.shutdown();
    drop(engine);
    let engine = Engine::open(cfg).unwrap();
    for i in 0..40 {
        let basket = engine.basket(&format!("u{i}")).unwrap().expect("basket kept");
        assert_eq!(basket.lines[0].quantity, 1);
    }
    engine.shutdown();
}
