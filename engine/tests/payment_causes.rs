//! Every payment record in the feed says what happened: a consumer sees `Completed`, `Failed`,
//! `Cancelled` and `Refunded` exactly once per transition, however often the payment is re-written for
//! bookkeeping, and the failure code and refund id ride on the record.

use std::collections::HashMap;
use std::time::Duration;

use kassa_engine::{Engine, EngineConfig, Event, Payment, PaymentCause, PaymentInput, PaymentStatus, ProductInput, cmd};

fn engine(dir: &std::path::Path, shards: usize) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = shards;
    cfg.pin_threads = false;
    Engine::open(cfg).unwrap()
}

fn checkout(engine: &Engine, user: &str, product: u64) -> Payment {
    engine.run_blocking(cmd::add_item(user, product, 1)).unwrap();
    engine.run_blocking(cmd::create_payment(PaymentInput::new(user, "credit_card", "stripe"))).unwrap()
}

/// Every payment event of every shard, in feed order per shard.
fn payment_events(engine: &Engine) -> Vec<(Payment, PaymentCause)> {
    let mut out = Vec::new();
    for shard in 0..engine.shards() {
        let mut sub = engine.subscribe(shard, 1).unwrap();
        while let Some(r) = sub.next_timeout(Duration::from_millis(50)).unwrap() {
            if let Event::PaymentPut { payment, cause } = r.event {
                out.push((payment, cause));
            }
        }
    }
    out
}

#[test]
fn each_transition_is_one_record_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2);
    let mug = ProductInput {
        name: "Mug".into(),
        description: String::new(),
        price: 1250,
        stock: 10,
        category: "Home".into(),
        image_url: String::new(),
    };
    let mug = engine.run_blocking(cmd::create_product(mug)).unwrap().id;

    let bought = checkout(&engine, "ann", mug);
    engine.run_blocking(cmd::process_payment(bought.id.clone(), "pi_1")).unwrap();
    let refunded = engine.run_blocking(cmd::refund_payment(bought.id.clone(), None, "broken")).unwrap();
    assert!(refunded.refund_id.starts_with("re_"), "{}", refunded.refund_id);
    let failed = checkout(&engine, "bob", mug);
    let failed = engine.run_blocking(cmd::update_payment(failed.id, PaymentStatus::Failed, None)).unwrap();
    assert_eq!(failed.error_code, "failed_by_administrator");
    let cancelled = checkout(&engine, "cyd", mug);
    engine.run_blocking(cmd::cancel_payment(cancelled.id.clone())).unwrap();
    // A refused update of a completed payment writes nothing: still one completion.
    let edited = checkout(&engine, "dee", mug);
    engine.run_blocking(cmd::process_payment(edited.id.clone(), "pi_2")).unwrap();
    let meta = Some(vec![("order".to_string(), "42".to_string())]);
    engine.run_blocking(cmd::update_payment(edited.id.clone(), PaymentStatus::Completed, meta)).unwrap_err();

    let events = payment_events(&engine);
    let mut counts: HashMap<(String, PaymentCause), usize> = HashMap::new();
    for (payment, cause) in &events {
        *counts.entry((payment.id.clone(), *cause)).or_default() += 1;
    }
    let count = |id: &str, cause| counts.get(&(id.to_string(), cause)).copied().unwrap_or(0);
    for id in [&bought.id, &failed.id, &cancelled.id, &edited.id] {
        assert_eq!(count(id, PaymentCause::Created), 1, "{id} created once");
        assert_eq!(count(id, PaymentCause::Reserved), 1, "{id} reserved once");
    }
    assert_eq!((count(&bought.id, PaymentCause::Completed), count(&bought.id, PaymentCause::Refunded)), (1, 1));
    assert_eq!((count(&failed.id, PaymentCause::Failed), count(&failed.id, PaymentCause::Completed)), (1, 0));
    assert_eq!(count(&cancelled.id, PaymentCause::Cancelled), 1);
    assert_eq!(count(&edited.id, PaymentCause::Completed), 1, "completed once, however often re-written");
    for (payment, cause) in &events {
        let expected = match cause {
            PaymentCause::Completed => Some(PaymentStatus::Completed),
            PaymentCause::Failed => Some(PaymentStatus::Failed),
            PaymentCause::Cancelled => Some(PaymentStatus::Cancelled),
            PaymentCause::Refunded => Some(PaymentStatus::Refunded),
            _ => None,
        };
        if let Some(status) = expected {
            assert_eq!(payment.status, status, "the cause matches the state it produced");
        }
        if *cause == PaymentCause::Failed {
            assert!(!payment.error_code.is_empty() && !payment.failure_reason.is_empty());
        }
    }
    assert!(events.iter().any(|(_, c)| *c == PaymentCause::Bookkeeping), "re-writes are there, marked as bookkeeping");
    engine.shutdown();
}

#[test]
fn a_refused_reservation_fails_with_a_stock_code() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1);
    let one = ProductInput {
        name: "Last".into(),
        description: String::new(),
        price: 500,
        stock: 1,
        category: "x".into(),
        image_url: String::new(),
    };
    let one = engine.run_blocking(cmd::create_product(one)).unwrap().id;
    engine.run_blocking(cmd::add_item("eve", one, 1)).unwrap();
    engine.run_blocking(cmd::add_item("fay", one, 1)).unwrap();
    engine.run_blocking(cmd::create_payment(PaymentInput::new("eve", "credit_card", "stripe"))).unwrap();
    engine.run_blocking(cmd::create_payment(PaymentInput::new("fay", "credit_card", "stripe"))).unwrap_err();
    let failed: Vec<_> = payment_events(&engine).into_iter().filter(|(_, c)| *c == PaymentCause::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].0.user_id.as_str(), failed[0].0.error_code.as_str()), ("fay", "insufficient_stock"));
    engine.shutdown();
}
