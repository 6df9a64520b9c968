//! Full mailboxes never stall the engine: cross-shard checkouts flooding two shards whose mailboxes hold
//! only a handful of messages are either refused at once with `overloaded` (the caller's runtime never
//! blocks) or finished; peer messages dropped on a full mailbox are re-driven until answered.

use std::sync::Arc;
use std::time::Duration;

use kassa_engine::{Answer, Cmd, Engine, EngineConfig, EngineError, ErrorKind, PaymentInput, PaymentStatus, ProductInput, cmd};

const BUYERS: usize = 60;

async fn until_admitted<T: Answer>(engine: &Engine, command: Cmd<T>, overloaded: &mut u64) -> Result<T, EngineError> {
    // A refused caller backs off briefly, as a real client would; no bound on attempts, since how many
    // refusals a loaded machine sees says nothing. A stalled engine shows as the test's overall deadline.
    loop {
        match engine.run(command.clone()).await {
            Err(e) if e.kind == ErrorKind::Overloaded => {
                *overloaded += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_checkouts_finish_with_full_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.shards = 2;
    cfg.pin_threads = false;
    cfg.mailbox_capacity = 4;
    cfg.redrive_after = Duration::from_millis(50);
    let engine = Arc::new(Engine::open(cfg).expect("engine opens"));
    // Ids 1 and 2 live on different shards, so every checkout crosses shards.
    let mut ids = Vec::new();
    for name in ["left", "right"] {
        let input = ProductInput { name: name.into(), price: 250, stock: BUYERS as i64, ..ProductInput::default() };
        let p = until_admitted(&engine, cmd::create_product(input), &mut 0).await.unwrap();
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
                until_admitted(&engine, cmd::add_item(user.clone(), product_id, 1), &mut overloaded).await.expect("added");
            }
            let pay = cmd::create_payment(PaymentInput::new(user, "credit_card", "stripe"));
            let p = until_admitted(&engine, pay, &mut overloaded).await.expect("reserved");
            let p = until_admitted(&engine, cmd::process_payment(p.id, ""), &mut overloaded).await.expect("completed");
            (p.status, overloaded)
        }));
    }
    let mut refused = 0;
    let finished = async {
        for t in tasks {
            let (status, overloaded) = t.await.unwrap();
            assert_eq!(status, PaymentStatus::Completed);
            refused += overloaded;
        }
    };
    // Generous on purpose: this catches an engine that stopped making progress, not a slow one.
    tokio::time::timeout(Duration::from_secs(120), finished).await.expect("every checkout finished");
    assert!(refused > 0, "the flood did fill the mailboxes (else this test shows nothing)");
    for id in ids {
        let p = engine.product(id).unwrap().unwrap();
        assert_eq!((p.available, p.reserved, p.sold), (0, 0, BUYERS as i64), "every checkout sold exactly its units");
    }
    assert!(engine.stats().overloaded_total() >= refused, "every refusal is counted");
    engine.shutdown();
}
