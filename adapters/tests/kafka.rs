//! The Kafka target against the real broker of `deploy/local/services.sh` (`KASSA_KAFKA_BROKERS`).
//!
//! The topics have the old fixed names, so tests cannot have topics of their own: each test uses its own
//! transactional id prefix (hence its own producers, cursor keys and `kassa_producer` header) and its own
//! payment and user ids, reads from the end offsets it noted before writing, and keeps only its own
//! messages.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kassa_adapters::config::KafkaConfig;
use kassa_adapters::kafka::{
    BASKET_EVENTS, CURSOR_TOPIC, EVENT_TOPICS, HEADER_PRODUCER, KafkaTarget, Origin, PAYMENT_EVENTS, STOCK_EVENTS, event_id, events_of,
    partition_of,
};
use kassa_adapters::{Connect, Entity, KafkaConnect, Target, TargetError};
use kassa_engine::placement::shard_of_user;
use kassa_engine::{
    Basket, BasketCause, Event, FeedRecord, Holding, Notification, Payment, PaymentCause, PaymentItem, PaymentStatus, Product, ProductCause,
};
use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn brokers() -> String {
    std::env::var("KASSA_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "KASSA_KAFKA_BROKERS is not set: start the services (deploy/local/services.sh up) and eval \"$(deploy/local/services.sh env)\""
        )
    })
}

fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn config(prefix: &str, snapshot: bool) -> KafkaConfig {
    KafkaConfig { brokers: brokers(), transactional_id: prefix.to_string(), snapshot, ..KafkaConfig::default() }
}

async fn connect(prefix: &str, shard: usize, shards: usize) -> KafkaTarget {
    KafkaConnect::new(config(prefix, false)).connect(shard, shards).await.expect("connect to kafka")
}

// ------------------------------------------------------------------ fixtures

const CREATED: i64 = 1_714_558_800_000_000; // 2024-05-01T10:20:00Z
const PROCESSED: i64 = 1_714_558_830_123_456; // 2024-05-01T10:20:30.123456Z
const FAILED_AT: i64 = 1_714_558_845_500_000; // 2024-05-01T10:20:45.5Z
const REFUNDED_AT: i64 = 1_714_562_400_000_000; // 2024-05-01T11:20:00Z

fn item(payment: &str, product_id: u64, name: &str, quantity: i64, price: i64, category: &str) -> PaymentItem {
    PaymentItem {
        id: format!("item_{payment}_{product_id}"),
        product_id,
        name: name.into(),
        quantity,
        price,
        category: category.into(),
        created_at: CREATED,
    }
}

fn payment(id: &str, user: &str, status: PaymentStatus, items: Vec<PaymentItem>) -> Payment {
    Payment {
        id: id.into(),
        user_id: user.into(),
        basket_id: format!("basket_{user}"),
        amount: items.iter().map(PaymentItem::subtotal).sum(),
        currency: "USD".into(),
        status,
        method: "credit_card".into(),
        provider: "stripe".into(),
        provider_id: String::new(),
        token: String::new(),
        payment_method_id: String::new(),
        description: "order".into(),
        metadata: Vec::new(),
        items,
        holding: Holding::Reserved,
        waiting_on: Vec::new(),
        failure_reason: String::new(),
        error_code: String::new(),
        refunded_amount: 0,
        refund_reason: String::new(),
        refund_id: String::new(),
        refunds: Vec::new(),
        created_at: CREATED,
        updated_at: CREATED,
        processed_at: None,
        expires_at: Some(CREATED + 30 * 60 * 1_000_000),
        attempt: 1,
        process_after_reserve: false,
        pending_idempotency: None,
        version: 0,
    }
}

fn completed(mut p: Payment) -> Payment {
    p.status = PaymentStatus::Completed;
    p.holding = Holding::Committed;
    p.processed_at = Some(PROCESSED);
    p.updated_at = PROCESSED;
    p
}

fn put(shard: usize, lsn: u64, mut payment: Payment, cause: PaymentCause) -> FeedRecord {
    payment.version = lsn;
    FeedRecord { shard, lsn, event: Event::PaymentPut { payment, cause } }
}

/// A user id of `shard` out of `shards`, unique to this run.
fn user_on(shard: usize, shards: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("user_{tag}_{i}"))
        .find(|u| shard_of_user(u, shards as u32) as usize == shard)
        .expect("some user id lands on every shard")
}

// ------------------------------------------------------------------ the test's own reader

#[derive(Clone, Debug)]
struct Msg {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Msg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn consumer(isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "kassa-kafka-tests")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("kafka consumer")
}

/// `(topic, partition) → high watermark` of the event topics (and the cursor topic).
type Offsets = BTreeMap<(String, i32), i64>;

fn end_offsets_now() -> Offsets {
    let c = consumer("read_uncommitted");
    let mut out = Offsets::new();
    for topic in EVENT_TOPICS.iter().chain([&CURSOR_TOPIC]) {
        let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let partitions = metadata.topics()[0].partitions().len() as i32;
        for p in 0..partitions {
            let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
            out.insert((topic.to_string(), p), high);
        }
    }
    out
}

/// Every message from `from` up to the current high watermarks, as a consumer with `isolation` sees it.
/// It waits until its position passes the high watermark (so an open transaction of a parallel test
/// cannot make it stop early), with a deadline that fails the test.
fn read_since(from: &Offsets, isolation: &str) -> Vec<Msg> {
    let ends = end_offsets_now();
    let c = consumer(isolation);
    let mut tpl = TopicPartitionList::new();
    let mut pending = Vec::new();
    for ((topic, p), end) in &ends {
        let start = from.get(&(topic.clone(), *p)).copied().unwrap_or(0);
        if *end > start {
            tpl.add_partition_offset(topic, *p, Offset::Offset(start)).expect("assign");
            pending.push((topic.clone(), *p, *end));
        }
    }
    let mut out = Vec::new();
    if pending.is_empty() {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("kafka read");
            let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf-8");
            let headers = m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect()).unwrap_or_default();
            out.push(Msg {
                topic: m.topic().into(),
                partition: m.partition(),
                offset: m.offset(),
                key: text(m.key()),
                headers,
                body: text(m.payload()),
            });
        }
        let position = c.position().expect("position");
        pending.retain(
            |(topic, p, end)| !matches!(position.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(at)) if at >= *end),
        );
        if pending.is_empty() {
            return out;
        }
        assert!(Instant::now() < deadline, "reading {isolation} did not reach the end of {pending:?}");
    }
}

async fn end_offsets() -> Offsets {
    tokio::task::spawn_blocking(end_offsets_now).await.unwrap()
}

/// This writer's event messages since `from` (read committed unless told otherwise).
async fn published(from: &Offsets, producer: &str, isolation: &'static str) -> Vec<Msg> {
    let from = from.clone();
    let producer = producer.to_string();
    tokio::task::spawn_blocking(move || {
        read_since(&from, isolation)
            .into_iter()
            .filter(|m| m.topic != CURSOR_TOPIC && m.header(HEADER_PRODUCER) == Some(&producer))
            .collect()
    })
    .await
    .unwrap()
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Sorted as the records they came from: by `kassa_lsn`, then `kassa_index`.
fn in_record_order(mut messages: Vec<Msg>) -> Vec<Msg> {
    let n = |m: &Msg, h: &str| m.header(h).and_then(|v| v.parse::<u64>().ok()).expect("kassa headers");
    messages.sort_by_key(|m| (n(m, "kassa_lsn"), n(m, "kassa_index")));
    messages
}

/// FNV-1a 32 written out again here, independently of the adapter's, for the partition checks.
fn fnv(bytes: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

fn sarama_partition(key: &str, partitions: i32) -> i32 {
    ((fnv(key.as_bytes()) as i32) % partitions).abs()
}

fn partitions_of(topic: &str) -> i32 {
    count_in(&end_offsets_now(), topic)
}

fn count_in(offsets: &Offsets, topic: &str) -> i32 {
    offsets.keys().filter(|(t, _)| t == topic).count() as i32
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_payment_publishes_the_old_events_in_the_old_order() {
    let run = unique();
    let prefix = format!("t-completed-{run}");
    let mut target = connect(&prefix, 0, 1).await;
    let producer = format!("{prefix}-0");
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let mut p = payment(
        &id,
        &user,
        PaymentStatus::Pending,
        vec![item(&id, 42, "Mug & Co", 2, 1999, "Home & Kitchen"), item(&id, 21, "Pen", 1, 500, "Office")],
    );
    p.metadata = vec![("b".into(), "2".into()), ("a".into(), "1 <x>".into())];
    let from = end_offsets().await;
    let records = vec![put(0, 10, p.clone(), PaymentCause::Created), put(0, 11, completed(p), PaymentCause::Completed)];
    target.apply(&records, 12).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(12));

    let got = in_record_order(published(&from, &producer, "read_committed").await);
    assert_eq!(got.len(), 4, "{got:#?}");
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, [PAYMENT_EVENTS, STOCK_EVENTS, STOCK_EVENTS, BASKET_EVENTS]);
    let keys: Vec<&str> = got.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, [id.as_str(), "42", "21", user.as_str()]);

    let kassa =
        |index: &'static str| [("kassa_producer", producer.as_str()), ("kassa_shard", "0"), ("kassa_lsn", "11"), ("kassa_index", index)];
    let with = |old: &[(&str, &str)], index: &'static str| {
        let mut all = owned(old);
        all.extend(owned(&kassa(index)));
        all
    };
    assert_eq!(got[0].headers, with(&[("event_type", "payment.completed"), ("payment_id", id.as_str()), ("user_id", user.as_str())], "0"));
    assert_eq!(got[1].headers, with(&[("event_type", "stock.updated"), ("product_id", "42")], "1"));
    assert_eq!(got[2].headers, with(&[("event_type", "stock.updated"), ("product_id", "21")], "2"));
    let basket = format!("basket_{user}");
    assert_eq!(got[3].headers, with(&[("event_type", "basket.cleared"), ("user_id", user.as_str()), ("basket_id", basket.as_str())], "3"));

    assert_eq!(
        got[0].body,
        format!(
            r#"{{"event_id":"00000000-0000-8000-8000-00000000000b","event_type":"payment.completed","timestamp":"2024-05-01T10:20:30.123456Z","payment_id":"{id}","user_id":"{user}","basket_id":"basket_{user}","amount":44.98,"currency":"USD","items":[{{"product_id":42,"name":"Mug \u0026 Co","quantity":2,"price":19.99,"subtotal":39.98,"category":"Home \u0026 Kitchen"}},{{"product_id":21,"name":"Pen","quantity":1,"price":5,"subtotal":5,"category":"Office"}}],"metadata":{{"a":"1 \u003cx\u003e","b":"2"}}}}"#
        )
    );
    assert_eq!(
        got[1].body,
        format!(
            r#"{{"event_id":"00000000-0001-8000-8000-00000000000b","event_type":"stock.updated","timestamp":"2024-05-01T10:20:30.123456Z","product_id":42,"quantity":2,"operation":"decrease","reason":"Payment completed","metadata":{{"payment_id":"{id}","user_id":"{user}"}}}}"#
        )
    );
    assert_eq!(
        got[2].body,
        format!(
            r#"{{"event_id":"00000000-0002-8000-8000-00000000000b","event_type":"stock.updated","timestamp":"2024-05-01T10:20:30.123456Z","product_id":21,"quantity":1,"operation":"decrease","reason":"Payment completed","metadata":{{"payment_id":"{id}","user_id":"{user}"}}}}"#
        )
    );
    assert_eq!(
        got[3].body,
        format!(
            r#"{{"event_id":"00000000-0003-8000-8000-00000000000b","event_type":"basket.cleared","timestamp":"2024-05-01T10:20:30.123456Z","user_id":"{user}","basket_id":"basket_{user}","reason":"Payment completed","metadata":{{"payment_id":"{id}"}}}}"#
        )
    );

    // Partitions: Sarama's hash partitioner. By hand: fnv1a32("42") = 0x87e38583 = -2015132285 as int32,
    // % 3 = -2 → 2; fnv1a32("21") = 0x8cf297ec = -1930258452, % 3 = 0 (an unsigned modulo would give 1,
    // Sarama's reference variant 2).
    assert_eq!(count_in(&from, STOCK_EVENTS), 3, "the test's hand-computed partitions assume 3 partitions");
    assert_eq!((got[1].partition, got[2].partition), (2, 0));
    for m in &got {
        let count = count_in(&from, &m.topic);
        assert_eq!(m.partition, partition_of(m.key.as_bytes(), count), "{m:?}");
        assert_eq!(m.partition, sarama_partition(&m.key, count), "{m:?}");
    }
    // Within a partition the old order is the offset order.
    for a in &got {
        for b in &got {
            let index = |m: &Msg| m.header("kassa_index").and_then(|v| v.parse::<u32>().ok());
            if (a.topic == b.topic && a.partition == b.partition) && index(a) < index(b) {
                assert!(a.offset < b.offset);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_refunded_payments_and_a_completion_without_items() {
    let run = unique();
    let prefix = format!("t-failref-{run}");
    let producer = format!("{prefix}-0");
    let mut target = connect(&prefix, 0, 1).await;
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 1001, "Lamp", 3, 2500, "Home")]);

    let mut failed = p.clone();
    failed.status = PaymentStatus::Failed;
    failed.failure_reason = "insufficient stock for product 1001 & more".into();
    failed.error_code = "insufficient_stock".into();
    failed.updated_at = FAILED_AT;
    let mut refunded = completed(p.clone());
    refunded.status = PaymentStatus::Refunded;
    refunded.refunded_amount = 1250;
    refunded.refund_reason = "damaged".into();
    refunded.refund_id = format!("re_{run}");
    refunded.updated_at = REFUNDED_AT;
    refunded.metadata = vec![("order".into(), "A-1".into())];
    let (bare_id, bare_user) = (format!("pay_bare_{run}"), format!("user_bare_{run}"));
    let bare = completed(payment(&bare_id, &bare_user, PaymentStatus::Pending, Vec::new()));

    let from = end_offsets().await;
    let records = vec![
        put(0, 20, failed, PaymentCause::Failed),
        put(0, 21, refunded, PaymentCause::Refunded),
        put(0, 22, bare, PaymentCause::Completed),
    ];
    target.apply(&records, 23).await.unwrap();
    let got = in_record_order(published(&from, &producer, "read_committed").await);
    assert_eq!(got.len(), 4, "{got:#?}");

    assert_eq!((got[0].topic.as_str(), got[0].key.as_str()), (PAYMENT_EVENTS, id.as_str()));
    assert_eq!(
        got[0].headers[..3],
        owned(&[("event_type", "payment.failed"), ("payment_id", id.as_str()), ("user_id", user.as_str())])[..]
    );
    assert_eq!(
        got[0].body,
        format!(
            r#"{{"event_id":"00000000-0000-8000-8000-000000000014","event_type":"payment.failed","timestamp":"2024-05-01T10:20:45.5Z","payment_id":"{id}","user_id":"{user}","basket_id":"basket_{user}","amount":75,"currency":"USD","reason":"insufficient stock for product 1001 \u0026 more","error_code":"insufficient_stock","metadata":{{}}}}"#
        )
    );
    assert_eq!((got[1].topic.as_str(), got[1].key.as_str()), (PAYMENT_EVENTS, id.as_str()));
    assert_eq!(
        got[1].headers[..3],
        owned(&[("event_type", "payment.refunded"), ("payment_id", id.as_str()), ("user_id", user.as_str())])[..]
    );
    assert_eq!(
        got[1].body,
        format!(
            r#"{{"event_id":"00000000-0000-8000-8000-000000000015","event_type":"payment.refunded","timestamp":"2024-05-01T11:20:00Z","payment_id":"{id}","user_id":"{user}","amount":12.5,"currency":"USD","reason":"damaged","refund_id":"re_{run}","metadata":{{"order":"A-1"}}}}"#
        )
    );
    // No items: `items` is null, no stock event, the basket is still cleared.
    assert_eq!((got[2].topic.as_str(), got[2].key.as_str()), (PAYMENT_EVENTS, bare_id.as_str()));
    assert_eq!(
        got[2].body,
        format!(
            r#"{{"event_id":"00000000-0000-8000-8000-000000000016","event_type":"payment.completed","timestamp":"2024-05-01T10:20:30.123456Z","payment_id":"{bare_id}","user_id":"{bare_user}","basket_id":"basket_{bare_user}","amount":0,"currency":"USD","items":null,"metadata":{{}}}}"#
        )
    );
    assert_eq!((got[3].topic.as_str(), got[3].key.as_str()), (BASKET_EVENTS, bare_user.as_str()));
    assert_eq!(got[3].header("kassa_index"), Some("1"));
    assert_eq!(target.cursor().await.unwrap(), Some(23));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookkeeping_and_other_records_publish_nothing_but_move_the_cursor() {
    let run = unique();
    let prefix = format!("t-quiet-{run}");
    let producer = format!("{prefix}-0");
    let mut target = connect(&prefix, 0, 1).await;
    assert_eq!(target.cursor().await.unwrap(), None);
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 5, "Cup", 1, 300, "Home")]);
    let mut processing = p.clone();
    processing.status = PaymentStatus::Processing;
    let mut cancelled = p.clone();
    cancelled.status = PaymentStatus::Cancelled;
    let done = completed(p.clone());
    let product = Product {
        id: 5,
        name: "Cup".into(),
        description: String::new(),
        price: 300,
        category: "Home".into(),
        image_url: String::new(),
        available: 9,
        reserved: 0,
        sold: 1,
        created_at: CREATED,
        updated_at: CREATED,
        version: 0,
    };
    let basket = Basket {
        id: format!("basket_{user}"),
        user_id: user.clone(),
        lines: Vec::new(),
        created_at: CREATED,
        updated_at: CREATED,
        expires_at: CREATED,
        version: 0,
    };
    let notification = Notification {
        id: format!("n_{run}"),
        user_id: user.clone(),
        title: "Payment Successful".into(),
        message: String::new(),
        kind: "payment".into(),
        status: "pending".into(),
        priority: "high".into(),
        channel: "in_app".into(),
        template_id: String::new(),
        data: Vec::new(),
        created_at: CREATED,
        updated_at: CREATED,
        sent_at: None,
        read_at: None,
        expires_at: None,
        send_at: None,
        attempts: 0,
        delivery_id: String::new(),
        deliveries: Vec::new(),
        next_attempt_at: None,
        delivered_at: None,
        version: 0,
    };
    let from = end_offsets().await;
    let records = vec![
        put(0, 30, p.clone(), PaymentCause::Created),
        put(0, 31, p.clone(), PaymentCause::Reserved),
        put(0, 32, processing, PaymentCause::Processing),
        put(0, 33, done.clone(), PaymentCause::Bookkeeping),
        put(0, 34, done, PaymentCause::Updated),
        put(0, 35, cancelled, PaymentCause::Cancelled),
        put(0, 36, p.clone(), PaymentCause::Retried),
        FeedRecord { shard: 0, lsn: 37, event: Event::ProductPut { product, cause: ProductCause::Sold } },
        FeedRecord { shard: 0, lsn: 38, event: Event::BasketPut { basket, cause: BasketCause::Purchased } },
        FeedRecord { shard: 0, lsn: 39, event: Event::NotificationPut { notification } },
    ];
    target.apply(&records, 40).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(40));
    // With no records it only moves the cursor.
    target.apply(&[], 45).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(45));
    assert!(published(&from, &producer, "read_uncommitted").await.is_empty());
    // Nothing but the cursor: read back holds no history.
    assert!(target.read_back().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_rewound_batch_publishes_nothing_again() {
    let run = unique();
    let prefix = format!("t-replay-{run}");
    let producer = format!("{prefix}-0");
    let mut target = connect(&prefix, 0, 1).await;
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 9, "Bag", 1, 1000, "Bags")]);
    let batch = vec![put(0, 1, p.clone(), PaymentCause::Created), put(0, 2, completed(p), PaymentCause::Completed)];
    let from = end_offsets().await;
    target.apply(&batch, 3).await.unwrap();
    // The same batch again (a replay after a crash before the runner saw the commit).
    target.apply(&batch, 3).await.unwrap();
    // A rewind, then the records again.
    target.apply(&[], 1).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(1));
    target.apply(&batch, 3).await.unwrap();
    // A new writer for the same shard reads the guard from Kafka.
    drop(target);
    let mut again = connect(&prefix, 0, 1).await;
    assert_eq!(again.cursor().await.unwrap(), Some(3));
    again.apply(&batch, 3).await.unwrap();
    let got = published(&from, &producer, "read_committed").await;
    assert_eq!(got.len(), 3, "one completion, one stock event, one basket event: {got:#?}");
    let ids: HashSet<String> = got.iter().map(|m| m.body[13..49].to_string()).collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_writer_fails_then_retries_without_duplicates() {
    let run = unique();
    let prefix = format!("t-fenced-{run}");
    let producer = format!("{prefix}-0");
    let mut first = connect(&prefix, 0, 1).await;
    // A second writer with the same transactional id fences the first.
    let mut second = connect(&prefix, 0, 1).await;
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = completed(payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 3, "Hat", 2, 1500, "Hats")]));
    let batch = vec![put(0, 5, p, PaymentCause::Completed)];
    let from = end_offsets().await;
    match first.apply(&batch, 6).await {
        Err(TargetError::Unavailable(reason)) => assert!(!reason.is_empty()),
        other => panic!("a fenced producer must fail the batch as unavailable: {other:?}"),
    }
    assert!(published(&from, &producer, "read_committed").await.is_empty(), "nothing of the failed attempt is committed");
    assert_eq!(first.cursor().await.unwrap(), None, "nor its cursor");
    // The runner retries: a new producer (fencing the second writer) publishes the batch once.
    first.apply(&batch, 6).await.unwrap();
    // The second writer is fenced now; its retry reads the moved cursor and publishes nothing again.
    assert!(matches!(second.apply(&batch, 6).await, Err(TargetError::Unavailable(_))));
    second.apply(&batch, 6).await.unwrap();
    assert_eq!(second.cursor().await.unwrap(), Some(6));
    let got = in_record_order(published(&from, &producer, "read_committed").await);
    let ids: Vec<&str> = got.iter().map(|m| &m.body[13..49]).collect();
    assert_eq!(
        ids,
        ["00000000-0000-8000-8000-000000000005", "00000000-0001-8000-8000-000000000005", "00000000-0002-8000-8000-000000000005"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_consumers_never_see_an_aborted_transaction() {
    let run = unique();
    let producer_id = format!("t-aborted-{run}-0");
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = completed(payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 4, "Box", 1, 100, "Boxes")]));
    let record = put(0, 8, p, PaymentCause::Completed);
    let events = events_of(&record, &producer_id).unwrap();
    assert_eq!(events.len(), 3);
    let from = end_offsets().await;
    // The adapter's messages, in a transaction that is delivered to the log and then aborted.
    let txn = producer_id.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("transactional.id", format!("{txn}-raw"))
            .create()
            .expect("producer");
        producer.init_transactions(Duration::from_secs(30)).unwrap();
        producer.begin_transaction().unwrap();
        for e in &events {
            let headers = e.headers.iter().fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
                h.insert(rdkafka::message::Header { key: k, value: Some(v.as_bytes()) })
            });
            producer.send(BaseRecord::to(e.topic).key(&e.key).payload(&e.body).headers(headers)).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        producer.abort_transaction(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    assert!(published(&from, &producer_id, "read_committed").await.is_empty());
    // Read uncommitted (Sarama's default) sees them: the redelivery after such an abort carries the same
    // event ids, which is how such a consumer can tell.
    let dirty = published(&from, &producer_id, "read_uncommitted").await;
    assert_eq!(dirty.len(), 3, "{dirty:#?}");
    assert_eq!(
        &dirty.iter().find(|m| m.topic == PAYMENT_EVENTS).unwrap().body[13..49],
        event_id(Origin::Record, 0, 8, 0).unwrap().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_byte_identical() {
    let run = unique();
    let prefix = format!("t-redeliver-{run}");
    let producer = format!("{prefix}-0");
    let mut target = connect(&prefix, 0, 1).await;
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let p = completed(payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 6, "Cap", 1, 800, "Hats")]));
    let batch = vec![put(0, 77, p, PaymentCause::Completed)];
    let from = end_offsets().await;
    target.apply(&batch, 78).await.unwrap();
    // An operator resets the cursor with a tombstone: the writer starts over and publishes again.
    let key = producer.clone();
    tokio::task::spawn_blocking(move || {
        let plain: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
        let partitions = partitions_of(CURSOR_TOPIC);
        plain
            .send(BaseRecord::<String, [u8]>::to(CURSOR_TOPIC).key(&key).partition(partition_of(key.as_bytes(), partitions)))
            .map_err(|(e, _)| e)
            .unwrap();
        plain.flush(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(target.cursor().await.unwrap(), None);
    target.apply(&batch, 78).await.unwrap();
    let got = published(&from, &producer, "read_committed").await;
    assert_eq!(got.len(), 6, "{got:#?}");
    // Every message twice, identical in topic, partition, key, headers and body (event id included).
    let mut copies: Vec<_> = got.iter().map(|m| (m.topic.clone(), m.partition, m.key.clone(), m.headers.clone(), m.body.clone())).collect();
    copies.sort();
    for pair in copies.chunks(2) {
        assert_eq!(pair[0], pair[1]);
    }
    copies.dedup();
    assert_eq!(copies.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_back_agrees_with_render_and_keeps_to_its_shard() {
    let run = unique();
    let prefix = format!("t-verify-{run}");
    let mut shard0 = connect(&prefix, 0, 2).await;
    let mut shard1 = connect(&prefix, 1, 2).await;
    let user0 = user_on(0, 2, &run);
    let user1 = user_on(1, 2, &run);
    let id0 = format!("pay_{run}_0");
    let id1 = format!("pay_{run}_1");

    // Shard 0: fails, is retried, completes, is refunded (with bookkeeping in between).
    let p = payment(
        &id0,
        &user0,
        PaymentStatus::Pending,
        vec![item(&id0, 11, "Kettle", 1, 4000, "Home"), item(&id0, 12, "Tea", 3, 350, "Food")],
    );
    let mut failed = p.clone();
    failed.status = PaymentStatus::Failed;
    failed.failure_reason = "payment has expired".into();
    failed.error_code = "payment_expired".into();
    let mut retried = p.clone();
    retried.attempt = 2;
    let done = completed(retried.clone());
    let mut refunded = done.clone();
    refunded.status = PaymentStatus::Refunded;
    refunded.refunded_amount = 5050;
    refunded.refund_id = format!("re_{run}");
    let history = vec![
        put(0, 1, p, PaymentCause::Created),
        put(0, 2, failed, PaymentCause::Failed),
        put(0, 3, retried, PaymentCause::Retried),
        put(0, 4, done.clone(), PaymentCause::Completed),
        put(0, 5, done, PaymentCause::Bookkeeping),
        put(0, 6, refunded.clone(), PaymentCause::Refunded),
    ];
    shard0.finish_load(0, &HashSet::new()).await.unwrap();
    shard0.apply(&history, 7).await.unwrap();
    let mut final0 = refunded;
    final0.version = 6;

    // Shard 1: one completed payment of its own.
    let mut p1 = completed(payment(&id1, &user1, PaymentStatus::Pending, vec![item(&id1, 13, "Spoon", 4, 125, "Home")]));
    shard1.apply(&[put(1, 9, p1.clone(), PaymentCause::Completed)], 10).await.unwrap();
    p1.version = 9;

    let back0 = shard0.read_back().await.unwrap();
    let expected0: BTreeMap<String, String> = shard0.render(&Entity::Payment(final0.clone())).into_iter().collect();
    assert_eq!(back0, expected0);
    assert_eq!(
        back0[&format!("payment:{id0}")],
        "payment.failed\npayment.completed\nstock.updated 11 1\nstock.updated 12 3\nbasket.cleared basket_".to_string()
            + &user0
            + "\npayment.refunded 50.5"
    );
    // The other shard's payment is neither read back nor rendered by shard 0, and vice versa.
    assert!(shard0.render(&Entity::Payment(p1.clone())).is_empty());
    assert!(shard1.render(&Entity::Payment(final0)).is_empty());
    let back1 = shard1.read_back().await.unwrap();
    let expected1: BTreeMap<String, String> = shard1.render(&Entity::Payment(p1)).into_iter().collect();
    assert_eq!(back1, expected1);
    assert_eq!(back1.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_without_the_snapshot_publishes_nothing_and_follows_from_the_snapshot() {
    let run = unique();
    let prefix = format!("t-boot-{run}");
    let producer = format!("{prefix}-0");
    let mut target = connect(&prefix, 0, 1).await;
    assert_eq!(target.cursor().await.unwrap(), None);
    let (id, user) = (format!("pay_{run}"), format!("user_{run}"));
    let mut old = completed(payment(&id, &user, PaymentStatus::Pending, vec![item(&id, 21, "Sock", 2, 200, "Wear")]));
    old.version = 50;
    let from = end_offsets().await;
    target.load(&[Entity::Payment(old.clone())]).await.unwrap();
    // Loading does not write the cursor: an interrupted bootstrap starts over.
    assert_eq!(target.cursor().await.unwrap(), None);
    target.finish_load(100, &HashSet::from([format!("payment:{id}")])).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(101));
    assert!(published(&from, &producer, "read_uncommitted").await.is_empty());
    // The writer never published this payment and verify expects nothing of it.
    assert!(target.read_back().await.unwrap().is_empty());
    assert!(target.render(&Entity::Payment(old)).is_empty());
    // What it follows afterwards, it publishes and verify expects.
    let (id2, user2) = (format!("pay2_{run}"), format!("user2_{run}"));
    let p = completed(payment(&id2, &user2, PaymentStatus::Pending, vec![item(&id2, 22, "Shoe", 1, 9000, "Wear")]));
    target.apply(&[put(0, 101, p.clone(), PaymentCause::Completed)], 102).await.unwrap();
    let mut last = p;
    last.version = 101;
    let expected: BTreeMap<String, String> = target.render(&Entity::Payment(last)).into_iter().collect();
    assert_eq!(expected.len(), 1);
    assert_eq!(target.read_back().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_in_bootstrap_publishes_what_the_snapshot_implies() {
    let run = unique();
    let prefix = format!("t-snap-{run}");
    let producer = format!("{prefix}-0");
    let mut target = KafkaConnect::new(config(&prefix, true)).connect(0, 2).await.unwrap();
    let user = user_on(0, 2, &run);
    let other = user_on(1, 2, &run);
    let mk = |n: &str, u: &str| format!("pay_{run}_{n}_{u}");
    let mut done = completed(payment(&mk("c", &user), &user, PaymentStatus::Pending, vec![item("c", 31, "Fork", 2, 150, "Home")]));
    done.version = 5;
    let mut refunded = completed(payment(&mk("r", &user), &user, PaymentStatus::Pending, vec![item("r", 32, "Knife", 1, 700, "Home")]));
    refunded.status = PaymentStatus::Refunded;
    refunded.refunded_amount = 700;
    refunded.version = 6;
    let mut failed = payment(&mk("f", &user), &user, PaymentStatus::Failed, vec![item("f", 33, "Plate", 1, 900, "Home")]);
    failed.failure_reason = "payment has expired".into();
    failed.error_code = "payment_expired".into();
    failed.version = 7;
    let mut pending = payment(&mk("p", &user), &user, PaymentStatus::Pending, vec![item("p", 34, "Bowl", 1, 400, "Home")]);
    pending.version = 8;
    let mut elsewhere = completed(payment(&mk("c", &other), &other, PaymentStatus::Pending, vec![item("o", 35, "Cup", 1, 100, "Home")]));
    elsewhere.version = 9;
    let snapshot: Vec<Entity> = [done, refunded, failed, pending, elsewhere].into_iter().map(Entity::Payment).collect();
    let from = end_offsets().await;
    target.load(&snapshot).await.unwrap();
    target.finish_load(10, &HashSet::new()).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(11));
    let expected: BTreeMap<String, String> = snapshot.iter().flat_map(|e| target.render(e)).collect();
    assert_eq!(expected.len(), 3, "completed, refunded and failed of shard 0: {expected:#?}");
    assert_eq!(target.read_back().await.unwrap(), expected);
    // Snapshot events have ids of their own (origin 1), never a record's.
    let got = published(&from, &producer, "read_committed").await;
    assert_eq!(got.len(), 3 + 4 + 1);
    for m in &got {
        let id: uuid::Uuid = m.body[13..49].parse().unwrap();
        let (origin, shard, _, _) = kassa_adapters::kafka::event_origin(&id).unwrap();
        assert_eq!((origin, shard), (Origin::Snapshot, 0));
    }
}

#[test]
fn the_schema_names_topics_keys_headers_and_the_partitioner() {
    let schema = KafkaConnect::new(KafkaConfig { transactional_id: "shop".into(), ..KafkaConfig::default() }).schema();
    for line in [
        "topic payment-events partitions=3 replication=1",
        "topic stock-events partitions=3 replication=1",
        "topic basket-events partitions=3 replication=1",
        "topic kassa-cursors partitions=3 replication=1 cleanup.policy=compact",
        "# partition = |int32(fnv1a32(key)) % partitions| (Sarama's default hash partitioner)",
        "# producers: transactional.id = shop-<shard>, acks=all, enable.idempotence=true, compression.type=snappy",
    ] {
        assert!(schema.lines().any(|l| l == line), "{line:?} missing from:\n{schema}");
    }
    assert_eq!(KafkaConnect::new(KafkaConfig::default()).name(), "kafka");
}
