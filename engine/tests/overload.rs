//! Full mailboxes never stall the engine: cross-shard checkouts flooding two shards whose mailboxes hold
//! only a handful of messages are either refused at once with `overloaded` (the caller's runtime never
//! blocks) or finished; peer messages dropped on a full mailbox are re-driven until answered.

use std::sync::Arc;

use kassa_engine::{Command, Engine, EngineConfig, EngineError, ErrorKind, PaymentInput, PaymentStatus, ProductInput, Reply, Request};

const BUYERS: usize = 60;

async fn until_admitted(engine: &Engine, request: Request, overloaded: &mut u64) -> Result<Reply, EngineError> {
    // Bounded: 2 000 refusals in a row would mean the engine stopped making progress.
    for _ in 0..2_000 {
        match engine.execute(request.clone()).await {
            Err(e) if e.kind == ErrorKind::Overloaded => {
                *overloaded += 1;
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
    panic!("still overloaded after 2000 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_checkouts_finish_with_full_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.shards = 2;
    cfg.pin_threads = false;
    cfg.mailbox_capacity = 4;
    cfg.redrive_after = std::time::Duration::from_millis(50);
    let engine = Arc::new(Engine::open(cfg).expect("engine opens"));
    // Ids 1 and 2 live on different shards, so every checkout crosses shards.
    let mut ids = Vec::new();
    for name in ["left", "right"] {
        let input = ProductInput { name: name.into(), price: 250, stock: BUYERS as i64, ..ProductInput::default() };
        let Reply::Product(p) = until_admitted(&engine, Command::CreateProduct(input).into(), &mut 0).await.unwrap() else { panic!() };
        ids.push(p.id);
    }
    assert_eq!(ids, vec![1, 2]);

    let mut tasks = Vec::new();
    for i in 0..BUYERS {
        let engine = engine.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut overloaded = 0;
            let user = format!("buyer-{i}");
            for &product_id in &ids {
                let add = Command::AddItem { user_id: user.clone(), product_id, quantity: 1 };
                until_admitted(&engine, add.into(), &mut overloaded).await.expect("added");
            }
            let pay = Command::CreatePayment(PaymentInput::new(user, "credit_card", "stripe"));
            let Reply::Payment(p) = until_admitted(&engine, pay.into(), &mut overloaded).await.expect("reserved") else { panic!() };
            let process = Command::ProcessPayment { payment_id: p.id, provider_id: String::new() };
            let Reply::Payment(p) = until_admitted(&engine, process.into(), &mut overloaded).await.expect("completed") else { panic!() };
            (p.status, overloaded)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (status, overloaded) = t.await.unwrap();
        assert_eq!(status, PaymentStatus::Completed);
        refused += overloaded;
    }
    assert!(refused > 0, "the flood did fill the mailboxes (else this test shows nothing)");
    for id in ids {
        let p = engine.product(id).unwrap().unwrap();
        assert_eq!((p.available, p.reserved, p.sold), (0, 0, BUYERS as i64), "every checkout sold exactly its units");
    }
    assert!(engine.stats().overloaded_total() >= refused, "every refusal is counted");
    engine.shutdown();
}
