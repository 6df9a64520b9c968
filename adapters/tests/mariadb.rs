//! The MariaDB target against the real MariaDB of `deploy/local/services.sh`, each test in a fresh
//! database of its own: the old tables exactly as §4.7 of the seed contract has them, rows as the old
//! reporting reads them, the version guard and tombstones, the cursor committed with the data (or not at
//! all), the bootstrap's removal of what the snapshot lacks, and `read_back` agreeing with `render`.

use std::collections::HashSet;

use kassa_adapters::config::MariadbConfig;
use kassa_adapters::{Connect, Entity, MariadbConnect, Target, TargetError};
use kassa_engine::placement::shard_of_user;
use kassa_engine::{Basket, BasketCause, Event, FeedRecord, Holding, Payment, PaymentCause, PaymentItem, PaymentStatus};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use rand::Rng;

/// 2024-05-01T10:20:30.123456Z.
const T0: i64 = 1_714_558_830_123_456;

fn base_url() -> String {
    std::env::var("KASSA_MYSQL_URL")
        .unwrap_or_else(|_| panic!("KASSA_MYSQL_URL is not set: start the services (deploy/local/services.sh up) and eval its `env`"))
}

/// `scheme://user:pw@host:port/db` with the database replaced.
fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

/// A fresh database (the kassa user may create `kassa_test_*`), dropped by [`Db::drop`].
struct Db {
    name: String,
    url: String,
}

impl Db {
    async fn fresh() -> Db {
        let name = format!("kassa_test_adapters_{:08x}", rand::rng().random::<u32>());
        let mut conn = mysql_async::Conn::from_url(base_url()).await.expect("MariaDB at KASSA_MYSQL_URL");
        conn.query_drop(format!("CREATE DATABASE {name}")).await.expect("create the test database");
        conn.disconnect().await.ok();
        let url = with_db(&base_url(), &name);
        Db { name, url }
    }

    fn connect(&self) -> MariadbConnect {
        MariadbConnect::new(&MariadbConfig { url: self.url.clone(), ..MariadbConfig::default() })
    }

    async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url.as_str()).await.expect("MariaDB test database")
    }

    async fn rows(&self, query: &str) -> Vec<Vec<Value>> {
        let mut conn = self.conn().await;
        // A prepared statement: typed values (datetimes, doubles) come back as such.
        let rows: Vec<Row> = conn.exec(query, ()).await.expect(query);
        conn.disconnect().await.ok();
        rows.into_iter().map(Row::unwrap).collect()
    }

    async fn drop(self) {
        let mut conn = self.conn().await;
        conn.query_drop(format!("DROP DATABASE {}", self.name)).await.expect("drop the test database");
        conn.disconnect().await.ok();
    }
}

fn item(payment_id: &str, product_id: u64, name: &str, price: i64, quantity: i64, category: &str) -> PaymentItem {
    PaymentItem {
        id: format!("item_{payment_id}_{product_id}"),
        product_id,
        name: name.into(),
        quantity,
        price,
        category: category.into(),
        created_at: T0,
    }
}

fn payment(id: &str, user_id: &str, version: u64) -> Payment {
    let items = vec![item(id, 7, "Chef's Knife & Board", 2999, 2, "Home & Kitchen"), item(id, 9, "Gift card", 10, 3, "")];
    Payment {
        id: id.into(),
        user_id: user_id.into(),
        basket_id: format!("basket_{user_id}_1714558830"),
        amount: items.iter().map(PaymentItem::subtotal).sum(),
        currency: "USD".into(),
        status: PaymentStatus::Pending,
        method: "credit_card".into(),
        provider: "stripe".into(),
        provider_id: String::new(),
        token: String::new(),
        payment_method_id: String::new(),
        description: "Order & more".into(),
        metadata: vec![("note".into(), "x & y".into()), ("channel".into(), "<web>".into())],
        items,
        holding: Holding::Reserved,
        waiting_on: vec![],
        failure_reason: String::new(),
        error_code: String::new(),
        refunded_amount: 0,
        refund_reason: String::new(),
        refund_id: String::new(),
        refunds: Vec::new(),
        created_at: T0,
        updated_at: T0 + 999,
        processed_at: None,
        expires_at: Some(T0 + 30 * 60 * 1_000_000),
        attempt: 1,
        process_after_reserve: false,
        pending_idempotency: None,
        version,
    }
}

fn put(p: &Payment, cause: PaymentCause) -> FeedRecord {
    FeedRecord { shard: 0, lsn: p.version, event: Event::PaymentPut { payment: p.clone(), cause } }
}

/// `n` user ids that shard `shard` of `shards` owns.
fn users_of(shard: usize, shards: u32, prefix: &str, n: usize) -> Vec<String> {
    (0..).map(|i| format!("{prefix}-{i}")).filter(|u| shard_of_user(u, shards) as usize == shard).take(n).collect()
}

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

#[tokio::test]
async fn schema_is_the_old_tables() {
    let db = Db::fresh().await;
    db.connect().connect(0, 1).await.expect("connect creates the schema");
    // Creating it again (another shard, a restart) changes nothing.
    db.connect().connect(0, 1).await.expect("connect is idempotent");

    let columns = |table: &str| {
        format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION",
            db.name
        )
    };
    // §4.7, column by column: name, type, nullability, default. MariaDB writes `json` as `longtext` (with
    // a json_valid check, below), bigint with its display width, and the default of a nullable column
    // without one as the text NULL.
    let expected_payments = [
        ("id", "varchar(191)", "NO", None),
        ("user_id", "varchar(191)", "NO", None),
        ("basket_id", "varchar(191)", "NO", None),
        ("amount", "double", "NO", None),
        ("currency", "varchar(191)", "NO", Some("'USD'")),
        ("status", "varchar(191)", "NO", Some("'pending'")),
        ("method", "longtext", "NO", None),
        ("provider", "longtext", "NO", None),
        ("provider_id", "varchar(191)", "YES", Some("NULL")),
        ("description", "longtext", "YES", Some("NULL")),
        ("metadata", "longtext", "YES", Some("NULL")),
        ("created_at", "datetime(3)", "YES", Some("NULL")),
        ("updated_at", "datetime(3)", "YES", Some("NULL")),
        ("processed_at", "datetime(3)", "YES", Some("NULL")),
        ("expires_at", "datetime(3)", "YES", Some("NULL")),
    ];
    let expected_items = [
        ("id", "varchar(191)", "NO", None),
        ("payment_id", "varchar(191)", "NO", None),
        ("product_id", "bigint(20)", "NO", None),
        ("name", "longtext", "NO", None),
        ("quantity", "bigint(20)", "NO", None),
        ("price", "double", "NO", None),
        ("subtotal", "double", "NO", None),
        ("category", "longtext", "YES", Some("NULL")),
        ("created_at", "datetime(3)", "YES", Some("NULL")),
    ];
    for (table, expected) in [("payments", &expected_payments[..]), ("payment_items", &expected_items[..])] {
        let got = db.rows(&columns(table)).await;
        let want: Vec<Vec<Value>> =
            expected.iter().map(|(n, t, null, default)| vec![text(n), text(t), text(null), default.map_or(Value::NULL, text)]).collect();
        assert_eq!(got, want, "columns of {table}");
    }

    let indexes = format!(
        "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME IN ('payments', 'payment_items') ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        db.name
    );
    let got = db.rows(&indexes).await;
    let want: Vec<Vec<Value>> = [
        ("payment_items", "PRIMARY", "id", 0),
        ("payment_items", "idx_payment_items_payment_id", "payment_id", 1),
        ("payments", "PRIMARY", "id", 0),
        ("payments", "idx_payments_basket_id", "basket_id", 1),
        ("payments", "idx_payments_provider_id", "provider_id", 1),
        ("payments", "idx_payments_user_id", "user_id", 1),
    ]
    .iter()
    .map(|(t, i, c, non_unique)| vec![text(t), text(i), text(c), Value::Int(*non_unique)])
    .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(|r| format!("{r:?}"));
    let mut want_sorted = want.clone();
    want_sorted.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(got_sorted, want_sorted, "indexes (and no others)");

    let checks = format!(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '{}' AND TABLE_NAME = 'payments'",
        db.name
    );
    assert_eq!(db.rows(&checks).await, vec![vec![text("json_valid(`metadata`)")]], "metadata is a json column");
    let foreign = format!("SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '{}'", db.name);
    assert_eq!(db.rows(&foreign).await, vec![vec![Value::Int(0)]], "no foreign keys");

    let ddl = db.connect().schema();
    assert!(ddl.contains("CREATE TABLE IF NOT EXISTS payments (") && ddl.contains("CREATE TABLE IF NOT EXISTS kassa_cursors ("), "{ddl}");
    db.drop().await;
}

#[tokio::test]
async fn rows_are_the_old_shapes_and_only_newer_versions_win() {
    let db = Db::fresh().await;
    let connect = db.connect();
    let mut target = connect.connect(0, 1).await.expect("connect");
    assert_eq!(target.cursor().await.expect("cursor"), None, "never written");

    let p = payment("0190aaaa-0000-7000-8000-000000000001", "alice", 5);
    target.apply(&[put(&p, PaymentCause::Created)], 6).await.expect("apply");
    assert_eq!(target.cursor().await.expect("cursor"), Some(6));

    let select_payment = format!("SELECT * FROM payments WHERE id = '{}'", p.id);
    let expected_payment = vec![
        text(&p.id),
        text("alice"),
        text("basket_alice_1714558830"),
        Value::Double(60.28),
        text("USD"),
        text("pending"),
        text("credit_card"),
        text("stripe"),
        text(""),
        text("Order & more"),
        // The map as JSON text, as Go writes one: keys sorted, HTML escaped.
        text(r#"{"channel":"\u003cweb\u003e","note":"x \u0026 y"}"#),
        // Milliseconds: 123456 µs is held as 123 ms; updated_at's extra 999 µs do not round up.
        Value::Date(2024, 5, 1, 10, 20, 30, 123_000),
        Value::Date(2024, 5, 1, 10, 20, 30, 124_000),
        Value::NULL,
        Value::Date(2024, 5, 1, 10, 50, 30, 123_000),
    ];
    assert_eq!(db.rows(&select_payment).await, vec![expected_payment.clone()]);

    let select_items = format!("SELECT * FROM payment_items WHERE payment_id = '{}' ORDER BY id", p.id);
    let stamp = Value::Date(2024, 5, 1, 10, 20, 30, 123_000);
    let expected_items = vec![
        vec![
            text(&format!("item_{}_7", p.id)),
            text(&p.id),
            Value::Int(7),
            text("Chef's Knife & Board"),
            Value::Int(2),
            Value::Double(29.99),
            Value::Double(59.98),
            text("Home & Kitchen"),
            stamp.clone(),
        ],
        // 0.1 × 3 is 0.3 from the exact decimal, not the 0.30000000000000004 of float arithmetic.
        vec![
            text(&format!("item_{}_9", p.id)),
            text(&p.id),
            Value::Int(9),
            text("Gift card"),
            Value::Int(3),
            Value::Double(0.1),
            Value::Double(0.3),
            text(""),
            stamp.clone(),
        ],
    ];
    assert_eq!(db.rows(&select_items).await, expected_items);

    // An older record and a same-version record with other content change nothing; the cursor moves.
    let mut older = payment(&p.id, "alice", 3);
    older.status = PaymentStatus::Cancelled;
    older.items.truncate(1);
    let mut same = p.clone();
    same.description = "changed".into();
    target.apply(&[put(&older, PaymentCause::Cancelled), put(&same, PaymentCause::Updated)], 9).await.expect("apply");
    assert_eq!(db.rows(&select_payment).await, vec![expected_payment.clone()], "older versions lose");
    assert_eq!(db.rows(&select_items).await, expected_items);
    assert_eq!(target.cursor().await.expect("cursor"), Some(9));

    // A bookkeeping record carries the whole state and is written; a newer version replaces the items
    // (one fewer now), and events of other kinds are skipped.
    let mut newer = p.clone();
    newer.version = 12;
    newer.status = PaymentStatus::Completed;
    newer.provider_id = "pi_123".into();
    newer.processed_at = Some(T0 + 2_000_000);
    newer.metadata.clear();
    newer.items.remove(0);
    newer.amount = newer.items.iter().map(PaymentItem::subtotal).sum();
    let basket =
        Basket { id: "b".into(), user_id: "alice".into(), lines: vec![], created_at: T0, updated_at: T0, expires_at: T0, version: 13 };
    let other = FeedRecord { shard: 0, lsn: 13, event: Event::BasketPut { basket, cause: BasketCause::Created } };
    target.apply(&[put(&newer, PaymentCause::Bookkeeping), other], 14).await.expect("apply");
    let row = db.rows(&select_payment).await;
    assert_eq!(row[0][3], Value::Double(0.3));
    assert_eq!(row[0][5], text("completed"));
    assert_eq!(row[0][8], text("pi_123"));
    assert_eq!(row[0][10], Value::NULL, "empty metadata is NULL");
    assert_eq!(row[0][13], Value::Date(2024, 5, 1, 10, 20, 32, 123_000));
    assert_eq!(db.rows(&select_items).await, expected_items[1..].to_vec(), "items replaced with the payment");
    let versions = db.rows("SELECT entity, id, shard, version, deleted FROM kassa_versions").await;
    assert_eq!(versions, vec![vec![text("payment"), text(&p.id), Value::Int(0), Value::Int(12), Value::Int(0)]]);
    assert_eq!(target.cursor().await.expect("cursor"), Some(14));

    // What MariaDB holds reads back exactly as the target renders the engine's payment.
    let held = target.read_back().await.expect("read back");
    let rendered: std::collections::BTreeMap<String, String> = target.render(&Entity::Payment(newer.clone())).into_iter().collect();
    assert_eq!(held, rendered);
    assert!(rendered[&format!("payment:{}", p.id)].contains(r#""status":"completed""#));
    assert!(target.render(&Entity::Payment(p.clone())) != target.render(&Entity::Payment(newer)), "render tells versions apart");
    db.drop().await;
}

#[tokio::test]
async fn a_rejected_record_commits_nothing_not_even_the_cursor() {
    let db = Db::fresh().await;
    let connect = db.connect();
    let mut target = connect.connect(0, 1).await.expect("connect");
    target.apply(&[], 3).await.expect("cursor only");
    assert_eq!(target.cursor().await.expect("cursor"), Some(3));

    // provider_id is varchar(191): a longer one cannot be held.
    let fine = payment("0190bbbb-0000-7000-8000-000000000001", "bob", 10);
    let mut long = payment("0190bbbb-0000-7000-8000-000000000002", "bob", 11);
    long.provider_id = "p".repeat(192);
    match target.apply(&[put(&fine, PaymentCause::Created), put(&long, PaymentCause::Processing)], 12).await {
        Err(TargetError::Rejected { lsn, reason }) => {
            assert_eq!(lsn, 11);
            assert!(reason.contains("provider_id"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(db.rows("SELECT COUNT(*) FROM payments").await, vec![vec![Value::Int(0)]], "the good record waits for the batch");
    assert_eq!(target.cursor().await.expect("cursor"), Some(3), "the cursor did not move");

    // What MariaDB itself refuses (here an old table whose `method` is narrower than ours) is found by
    // the target and rejected by its LSN, again leaving nothing written.
    let mut conn = db.conn().await;
    conn.query_drop("ALTER TABLE payments MODIFY method varchar(8) NOT NULL").await.expect("narrow the column");
    conn.disconnect().await.ok();
    let mut short = payment("0190bbbb-0000-7000-8000-000000000003", "bob", 20);
    short.method = "paypal".into();
    let wide = payment("0190bbbb-0000-7000-8000-000000000004", "bob", 21);
    match target.apply(&[put(&short, PaymentCause::Created), put(&wide, PaymentCause::Created)], 22).await {
        Err(TargetError::Rejected { lsn, reason }) => {
            assert_eq!(lsn, 21);
            assert!(reason.contains("1406") || reason.contains("too long"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(db.rows("SELECT COUNT(*) FROM payments").await, vec![vec![Value::Int(0)]]);
    assert_eq!(db.rows("SELECT COUNT(*) FROM kassa_versions").await, vec![vec![Value::Int(0)]], "trial writes were rolled back");
    assert_eq!(target.cursor().await.expect("cursor"), Some(3));
    // Without the refused record the rest goes through.
    target.apply(&[put(&short, PaymentCause::Created)], 21).await.expect("apply");
    assert_eq!(db.rows("SELECT id FROM payments").await, vec![vec![text(&short.id)]]);
    assert_eq!(target.cursor().await.expect("cursor"), Some(21));

    // A server that is not there is unavailable (retry), not a rejection.
    let nowhere =
        MariadbConnect::new(&MariadbConfig { url: "mysql://kassa:kassa@127.0.0.1:1/payment_service".into(), ..MariadbConfig::default() });
    assert!(matches!(nowhere.connect(0, 1).await, Err(TargetError::Unavailable(_))));
    db.drop().await;
}

#[tokio::test]
async fn bootstrap_loads_and_removes_only_what_the_snapshot_lacks() {
    let db = Db::fresh().await;
    let connect = db.connect();
    let shards = 2;
    let mut mine = connect.connect(0, shards as usize).await.expect("shard 0");
    let mut theirs = connect.connect(1, shards as usize).await.expect("shard 1");
    let users = users_of(0, shards, "boot", 4);
    let (stale_user, newer_user, legacy_user, loaded_user) = (&users[0], &users[1], &users[2], &users[3]);
    let other_user = &users_of(1, shards, "boot", 1)[0];

    // Already in the mirror: a payment the snapshot no longer has (old), one written after the snapshot
    // (newer), another shard's, and a row of the old estate that Kassa never wrote (no version row).
    let stale = payment("0190cccc-0000-7000-8000-000000000001", stale_user, 5);
    let newer = payment("0190cccc-0000-7000-8000-000000000002", newer_user, 50);
    let others = payment("0190cccc-0000-7000-8000-000000000003", other_user, 4);
    mine.apply(&[put(&stale, PaymentCause::Created), put(&newer, PaymentCause::Created)], 51).await.expect("apply");
    theirs.apply(&[put(&others, PaymentCause::Created)], 5).await.expect("apply");
    let mut conn = db.conn().await;
    conn.query_drop(format!(
        "INSERT INTO payments (id, user_id, basket_id, amount, method, provider) VALUES ('pay_legacy', '{legacy_user}', 'basket_1', 99.99, 'paypal', 'paypal')"
    ))
    .await
    .expect("legacy row");
    conn.disconnect().await.ok();

    // The snapshot at LSN 20: 600 payments (more than one multi-row statement's worth), loaded in the
    // runner's chunks of 512.
    let loaded: Vec<Payment> = (0..600).map(|i| payment(&format!("0190dddd-0000-7000-8000-{i:012}"), loaded_user, 1 + i % 20)).collect();
    let entities: Vec<Entity> = loaded.iter().cloned().map(Entity::Payment).collect();
    for chunk in entities.chunks(512) {
        mine.load(chunk).await.expect("load");
    }
    let present: HashSet<String> = entities.iter().map(Entity::key).collect();
    mine.finish_load(20, &present).await.expect("finish load");

    let ids: HashSet<String> = db
        .rows("SELECT id FROM payments")
        .await
        .into_iter()
        .map(|r| {
            String::from_utf8(match &r[0] {
                Value::Bytes(b) => b.clone(),
                v => panic!("{v:?}"),
            })
            .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 602, "600 loaded, the newer one and the other shard's");
    assert!(ids.contains(&newer.id) && ids.contains(&others.id));
    assert!(!ids.contains(&stale.id) && !ids.contains("pay_legacy"), "what the snapshot lacks is gone");
    assert_eq!(db.rows("SELECT COUNT(*) FROM payment_items").await, vec![vec![Value::Int(2 * 602)]], "items went with their payments");
    let tombstones = db.rows("SELECT id, version, deleted FROM kassa_versions WHERE deleted ORDER BY id").await;
    assert_eq!(
        tombstones,
        vec![vec![text(&stale.id), Value::Int(20), Value::Int(1)], vec![text("pay_legacy"), Value::Int(20), Value::Int(1)]]
    );
    assert_eq!(mine.cursor().await.expect("cursor"), Some(21));
    assert_eq!(theirs.cursor().await.expect("cursor"), Some(5), "another shard's cursor is its own");

    // A replay of the removed payment's old record does not bring it back; a later change does.
    mine.apply(&[put(&stale, PaymentCause::Created)], 21).await.expect("replay");
    assert_eq!(db.rows(&format!("SELECT COUNT(*) FROM payments WHERE id = '{}'", stale.id)).await, vec![vec![Value::Int(0)]]);
    let mut again = stale.clone();
    again.version = 25;
    mine.apply(&[put(&again, PaymentCause::Updated)], 26).await.expect("later change");
    assert_eq!(db.rows(&format!("SELECT COUNT(*) FROM payments WHERE id = '{}'", stale.id)).await, vec![vec![Value::Int(1)]]);

    // Each shard reads back its own payments only, exactly as it renders them.
    let held = mine.read_back().await.expect("read back");
    let expected: std::collections::BTreeMap<String, String> =
        loaded.iter().chain([&newer, &again]).flat_map(|p| mine.render(&Entity::Payment(p.clone()))).collect();
    assert_eq!(held.len(), 602);
    assert_eq!(held, expected);
    let held = theirs.read_back().await.expect("read back");
    assert_eq!(held.into_iter().collect::<Vec<_>>(), theirs.render(&Entity::Payment(others)));
    db.drop().await;
}
