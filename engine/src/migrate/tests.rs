//! Schema 1 to 4 records are read by this build: journal events converted when decoded, an older state
//! store rewritten once at open, and an engine opened on a schema 1 data directory serves its payments.

use super::*;
use crate::command::{Outcome, Reply};
use crate::event::PaymentCause;
use crate::model::{Holding, PaymentItem, PaymentStatus};
use crate::store::Store;

fn old_payment(status: PaymentStatus, failure: &str) -> v1::Payment {
    v1::Payment {
        id: "0190-pay".into(),
        user_id: "u1".into(),
        basket_id: "basket_u1_1".into(),
        amount: 2999,
        currency: "USD".into(),
        status,
        method: "credit_card".into(),
        provider: "stripe".into(),
        provider_id: "pi_1".into(),
        description: String::new(),
        metadata: vec![("order".into(), "7".into())],
        items: vec![PaymentItem {
            id: "item_0190-pay_1".into(),
            product_id: 1,
            name: "Mug".into(),
            quantity: 1,
            price: 2999,
            category: "Home".into(),
            created_at: 1,
        }],
        holding: Holding::Committed,
        waiting_on: Vec::new(),
        failure_reason: failure.into(),
        refunded_amount: 0,
        refund_reason: String::new(),
        created_at: 1,
        updated_at: 2,
        processed_at: Some(2),
        expires_at: Some(3),
        attempt: 1,
        process_after_reserve: false,
        pending_idempotency: None,
        version: 9,
    }
}

fn v1_bytes<T>(value: &T) -> rkyv::util::AlignedVec
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<rkyv::util::AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rkyv::rancor::Error>,
        >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(value).unwrap()
}

#[test]
fn schema_1_events_decode_with_their_new_fields() {
    let bytes = v1_bytes(&v1::Event::PaymentPut { payment: old_payment(PaymentStatus::Failed, "insufficient stock") });
    let converted = decode_event(1, &bytes).unwrap();
    let Event::PaymentPut { payment, cause } = converted.clone() else { panic!("a payment event") };
    assert_eq!(cause, PaymentCause::Bookkeeping);
    assert_eq!((payment.failure_reason.as_str(), payment.error_code.as_str()), ("insufficient stock", "payment_failed"));
    assert_eq!((payment.amount, payment.version, payment.metadata.len()), (2999, 9, 1));

    let refunded = v1_bytes(&v1::Event::PaymentPut { payment: old_payment(PaymentStatus::Refunded, "") });
    let Event::PaymentPut { payment, .. } = decode_event(1, &refunded).unwrap() else { panic!() };
    assert_eq!((payment.refund_id.as_str(), payment.error_code.as_str()), ("re_0190-pay", ""));

    // rkyv bytes carry no layout of their own: read as the current schema they are refused or misread,
    // never this payment. That is why every journal frame and every store names its schema.
    assert!(decode_event(SCHEMA, &bytes).map_or(true, |e| e != converted));
    assert!(decode_event(SCHEMA + 1, &bytes).unwrap_err().contains("not known"));
}

#[test]
fn a_schema_1_state_store_is_rewritten_once_at_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::FjallStore::open(&dir.path().join("state"), 1 << 20).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Payments, b"0190-pay", &v1_bytes(&old_payment(PaymentStatus::Completed, "")));
    let record = v1::IdempotencyRecord {
        scope: "u1".into(),
        key: "k".into(),
        fingerprint: 5,
        outcome: v1::Outcome::Ok(v1::Reply::Payment(old_payment(PaymentStatus::Completed, ""))),
        expires_at: 10,
    };
    batch.put(Keyspace::Idempotency, b"u1/k", &v1_bytes(&record));
    store.apply(&batch, 41).unwrap();

    assert_eq!(upgrade_state_store(&store).unwrap(), 2);
    assert_eq!(store.applied_lsn().unwrap(), 41, "a migration is not new state");
    let payment = views::decode_payment(&store.get(Keyspace::Payments, b"0190-pay").unwrap().unwrap()).unwrap();
    assert_eq!((payment.id.as_str(), payment.status, payment.items.len()), ("0190-pay", PaymentStatus::Completed, 1));
    let idem = views::decode_idempotency(&store.get(Keyspace::Idempotency, b"u1/k").unwrap().unwrap()).unwrap();
    assert!(matches!(idem.outcome, Outcome::Ok(Reply::Payment(ref p)) if p.id == "0190-pay"));
    assert_eq!(upgrade_state_store(&store).unwrap(), 0, "the marker says it is done");

    // A fresh store is marked current without converting anything.
    let fresh = crate::store::FjallStore::open(&dir.path().join("fresh"), 1 << 20).unwrap();
    assert_eq!(upgrade_state_store(&fresh).unwrap(), 0);
    assert_eq!(store_schema(&fresh).unwrap(), SCHEMA);
}

#[test]
fn schema_2_events_and_stores_read_with_no_token() {
    let old = v2::Payment::from(old_payment(PaymentStatus::Completed, ""));
    let bytes = v1_bytes(&v2::Event::PaymentPut { payment: old.clone(), cause: PaymentCause::Completed });
    let Event::PaymentPut { payment, cause } = decode_event(2, &bytes).unwrap() else { panic!("a payment event") };
    assert_eq!(cause, PaymentCause::Completed);
    assert_eq!((payment.token.as_str(), payment.payment_method_id.as_str(), payment.provider_id.as_str()), ("", "", "pi_1"));
    assert_eq!((payment.amount, payment.version, payment.status), (2999, 9, PaymentStatus::Completed));
    assert!(decode_event(SCHEMA, &bytes).map_or(true, |e| e != decode_event(2, &bytes).unwrap()), "the schema decides the layout");

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::FjallStore::open(&dir.path().join("state"), 1 << 20).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Payments, b"0190-pay", &v1_bytes(&old));
    let record = v2::IdempotencyRecord {
        scope: "u1".into(),
        key: "k".into(),
        fingerprint: 5,
        outcome: v2::Outcome::Ok(v2::Reply::Payment(old)),
        expires_at: 10,
    };
    batch.put(Keyspace::Idempotency, b"u1/k", &v1_bytes(&record));
    batch.put(Keyspace::Meta, SCHEMA_KEY, &2u16.to_be_bytes());
    store.apply(&batch, 7).unwrap();
    assert_eq!(upgrade_state_store(&store).unwrap(), 2);
    let payment = views::decode_payment(&store.get(Keyspace::Payments, b"0190-pay").unwrap().unwrap()).unwrap();
    assert_eq!((payment.id.as_str(), payment.token.as_str(), payment.items.len()), ("0190-pay", "", 1));
    let idem = views::decode_idempotency(&store.get(Keyspace::Idempotency, b"u1/k").unwrap().unwrap()).unwrap();
    assert!(matches!(idem.outcome, Outcome::Ok(Reply::Payment(ref p)) if p.id == "0190-pay"));
    assert_eq!(store_schema(&store).unwrap(), SCHEMA);
}

/// A payment written back in schema 1 (only for building an old data directory in a test).
fn downgrade(p: &model::Payment) -> v1::Payment {
    v1::Payment {
        id: p.id.clone(),
        user_id: p.user_id.clone(),
        basket_id: p.basket_id.clone(),
        amount: p.amount,
        currency: p.currency.clone(),
        status: p.status,
        method: p.method.clone(),
        provider: p.provider.clone(),
        provider_id: p.provider_id.clone(),
        description: p.description.clone(),
        metadata: p.metadata.clone(),
        items: p.items.clone(),
        holding: p.holding,
        waiting_on: p.waiting_on.clone(),
        failure_reason: p.failure_reason.clone(),
        refunded_amount: p.refunded_amount,
        refund_reason: p.refund_reason.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        processed_at: p.processed_at,
        expires_at: p.expires_at,
        attempt: p.attempt,
        process_after_reserve: p.process_after_reserve,
        pending_idempotency: p.pending_idempotency.clone(),
        version: p.version,
    }
}

#[test]
fn an_engine_opens_a_schema_1_data_directory() {
    use crate::{Engine, EngineConfig, PaymentInput, ProductInput, cmd};
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut cfg = EngineConfig::new(dir.path());
        cfg.shards = 1;
        cfg.pin_threads = false;
        cfg
    };
    let engine = Engine::open(config()).unwrap();
    let product = ProductInput {
        name: "Mug".into(),
        description: String::new(),
        price: 1250,
        stock: 3,
        category: "Home".into(),
        image_url: String::new(),
    };
    let product = engine.run_blocking(cmd::create_product(product)).unwrap();
    engine.run_blocking(cmd::add_item("u1", product.id, 2)).unwrap();
    let payment = engine.run_blocking(cmd::create_payment(PaymentInput::new("u1", "credit_card", "stripe"))).unwrap();
    engine.checkpoint().unwrap();
    engine.shutdown();
    drop(engine);

    // Turn the state store back into schema 1: payments in the old layout, no marker.
    {
        let views = crate::views::Views::open(&dir.path().join("shard-000"), crate::StoreChoice::Auto, 1 << 20).unwrap();
        let mut batch = WriteBatch::new();
        views
            .state
            .for_each(Keyspace::Payments, &mut |key, value| {
                batch.put(Keyspace::Payments, key, &v1_bytes(&downgrade(&views::decode_payment(value).unwrap())));
                true
            })
            .unwrap();
        batch.delete(Keyspace::Meta, SCHEMA_KEY);
        views.state.rewrite(&batch).unwrap();
        assert_eq!(store_schema(&*views.state).unwrap(), 1);
    }

    let engine = Engine::open(config()).unwrap();
    let read = engine.payment(&payment.id).unwrap().expect("the payment survives the migration");
    assert_eq!((read.amount, read.items.len(), read.status), (payment.amount, 1, payment.status));
    let processed = engine.run_blocking(cmd::process_payment(payment.id.clone(), "pi_9")).unwrap();
    assert_eq!(processed.status, PaymentStatus::Completed);
    engine.shutdown();
}

fn old_notification() -> v3::Notification {
    v3::Notification {
        id: "0190-note".into(),
        user_id: "u1".into(),
        title: "Shipped".into(),
        message: "On its way".into(),
        kind: "order".into(),
        status: "sent".into(),
        priority: "high".into(),
        channel: "webhook".into(),
        template_id: String::new(),
        data: vec![("email".into(), "u1@example.com".into())],
        created_at: 1,
        updated_at: 2,
        sent_at: Some(2),
        read_at: None,
        expires_at: None,
        send_at: None,
        attempts: 1,
        version: 4,
    }
}

#[test]
fn schema_3_notifications_read_with_no_deliveries() {
    let bytes = v1_bytes(&v3::Event::NotificationPut { notification: old_notification() });
    let Event::NotificationPut { notification } = decode_event(3, &bytes).unwrap() else { panic!("a notification event") };
    assert_eq!(
        (notification.id.as_str(), notification.status.as_str(), notification.attempts, notification.version),
        ("0190-note", "sent", 1, 4)
    );
    assert_eq!((notification.delivery_id.as_str(), notification.deliveries.len(), notification.next_attempt_at), ("", 0, None));
    assert!(decode_event(SCHEMA, &bytes).map_or(true, |e| e != decode_event(3, &bytes).unwrap()), "the schema decides the layout");

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::FjallStore::open(&dir.path().join("state"), 1 << 20).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Notifications, b"0190-note", &v1_bytes(&old_notification()));
    batch.put(Keyspace::Meta, SCHEMA_KEY, &3u16.to_be_bytes());
    store.apply(&batch, 12).unwrap();
    assert_eq!(upgrade_state_store(&store).unwrap(), 1);
    let read = views::decode_notification(&store.get(Keyspace::Notifications, b"0190-note").unwrap().unwrap()).unwrap();
    assert_eq!((read.title.as_str(), read.data.len(), read.delivered_at), ("Shipped", 1, None));
    assert_eq!(store_schema(&store).unwrap(), SCHEMA);
}

#[test]
fn schema_4_events_and_idempotency_records_read_with_the_new_replies_and_wallets() {
    let notification = model::Notification::from(old_notification());
    let record = v4::IdempotencyRecord {
        scope: "u1".into(),
        key: "k".into(),
        fingerprint: 5,
        outcome: v4::Outcome::Ok(v4::Reply::Notification(notification.clone())),
        expires_at: 10,
    };
    let bytes = v1_bytes(&v4::Event::IdempotencyPut { record: record.clone() });
    let Event::IdempotencyPut { record: read } = decode_event(4, &bytes).unwrap() else { panic!("an idempotency event") };
    assert!(matches!(read.outcome, Outcome::Ok(Reply::Notification(ref n)) if *n == notification));
    // (Schema 5 only added enum variants after the old ones, and these bytes happen to read the same as
    // either schema; the frame's schema still decides, as the layouts are not promised to agree.)

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::FjallStore::open(&dir.path().join("state"), 1 << 20).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Idempotency, b"u1/k", &v1_bytes(&record));
    batch.put(Keyspace::Notifications, b"0190-note", &views::encode(&notification));
    batch.put(Keyspace::Meta, SCHEMA_KEY, &4u16.to_be_bytes());
    store.apply(&batch, 3).unwrap();
    assert_eq!(upgrade_state_store(&store).unwrap(), 2);
    let idem = views::decode_idempotency(&store.get(Keyspace::Idempotency, b"u1/k").unwrap().unwrap()).unwrap();
    assert!(matches!(idem.outcome, Outcome::Ok(Reply::Notification(ref n)) if n.id == "0190-note"));
    let kept = views::decode_notification(&store.get(Keyspace::Notifications, b"0190-note").unwrap().unwrap()).unwrap();
    assert_eq!(kept, notification, "a schema 4 notification is already current");
}
