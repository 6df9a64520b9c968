//! The PostgreSQL target against a real PostgreSQL (`KASSA_PG_URL`, from `deploy/local/services.sh`):
//! every test makes its own databases and drops them, writes through the `Connect`/`Target` seam, and
//! reads the tables back with its own client to compare them with the old contract (seed contract §2.5,
//! §5.3) field by field.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kassa_adapters::config::PostgresConfig;
use kassa_adapters::{Connect, Entity, PostgresConnect, Target, TargetError};
use kassa_engine::placement::{shard_of_product, shard_of_user};
use kassa_engine::{Basket, BasketCause, Currency, Event, FeedRecord, Notification, Product, ProductCause, wire::rfc3339};
use tokio_postgres::{Client, NoTls};

/// 2024-05-01T10:20:30.123456Z: a time with every microsecond digit in use.
const T0: i64 = 1_714_558_830_123_456;

fn admin_url() -> String {
    std::env::var("KASSA_PG_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!("KASSA_PG_URL is not set: start the services with `eval \"$(deploy/local/services.sh up)\"` (CI always does)")
    })
}

/// `url` with its database replaced by `db` (query string kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let slash = base.rfind('/').filter(|i| !base[..*i].ends_with('/')).expect("KASSA_PG_URL names a database");
    format!("{}/{db}{query}", &base[..slash])
}

async fn client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped (with its connections) when the test ends, failed or not.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let name = format!("kassa_adapters_test_{tag}_{:016x}", rand::random::<u64>());
        let admin = client(&admin_url()).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        TestDb { url: with_database(&admin_url(), &name), name }
    }

    async fn client(&self) -> Client {
        client(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let admin = client(&admin_url()).await;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

fn connector(url: &str, notifications_url: Option<&str>) -> PostgresConnect {
    PostgresConnect::new(
        PostgresConfig { url: url.to_string(), notifications_url: notifications_url.map(str::to_string), ..Default::default() },
        Currency::USD,
    )
}

fn product(id: u64, price: i64, version: u64) -> Product {
    Product {
        id,
        name: format!("Product {id}"),
        description: "Home & Kitchen <deluxe>".into(),
        price,
        category: "Electronics".into(),
        image_url: "https://example.test/p.png".into(),
        available: 10,
        reserved: 3,
        sold: 7,
        created_at: T0,
        updated_at: T0 + 1,
        version,
    }
}

fn notification(id: &str, user: &str, version: u64) -> Notification {
    Notification {
        id: id.into(),
        user_id: user.into(),
        title: "Payment Successful".into(),
        message: "Your payment has been processed.".into(),
        kind: "payment".into(),
        status: "sent".into(),
        priority: "high".into(),
        channel: "email".into(),
        template_id: "tpl-receipt".into(),
        data: vec![("payment_id".into(), "pay_1".into()), ("amount".into(), "99.99 & more".into())],
        created_at: T0,
        updated_at: T0 + 2,
        sent_at: Some(T0 + 3),
        read_at: None,
        expires_at: Some(T0 + 86_400_000_000),
        send_at: None,
        attempts: 1,
        delivery_id: String::new(),
        deliveries: Vec::new(),
        next_attempt_at: None,
        delivered_at: None,
        version,
    }
}

fn put(lsn: u64, p: &Product) -> FeedRecord {
    FeedRecord { shard: 0, lsn, event: Event::ProductPut { product: p.clone(), cause: ProductCause::Updated } }
}

fn put_n(lsn: u64, n: &Notification) -> FeedRecord {
    FeedRecord { shard: 0, lsn, event: Event::NotificationPut { notification: n.clone() } }
}

fn gone(lsn: u64, id: u64) -> FeedRecord {
    FeedRecord { shard: 0, lsn, event: Event::ProductDeleted { id, version: lsn } }
}

fn gone_n(lsn: u64, n: &Notification) -> FeedRecord {
    FeedRecord { shard: 0, lsn, event: Event::NotificationDeleted { id: n.id.clone(), user_id: n.user_id.clone(), version: lsn } }
}

/// A product with its version = the LSN of the record that carries it.
fn at(mut p: Product, lsn: u64) -> (FeedRecord, Product) {
    p.version = lsn;
    (put(lsn, &p), p)
}

fn user_of_shard(shard: u32, shards: u32, skip: usize) -> String {
    (0..).map(|i| format!("user-{i}")).filter(|u| shard_of_user(u, shards) == shard).nth(skip).expect("a user")
}

async fn product_row(db: &Client, id: i64) -> Option<(String, String, String, i64, String, i64, i64)> {
    db.query_opt(
        "SELECT name, description, price::text, stock, category, \
         (extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint \
         FROM products WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
}

async fn version_of(db: &Client, entity: &str, id: &str) -> Option<(i64, bool)> {
    db.query_opt("SELECT version, deleted FROM kassa_versions WHERE entity = $1 AND id = $2", &[&entity, &id])
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

async fn cursor_row(db: &Client, shard: i32) -> Option<i64> {
    db.query_opt("SELECT next_lsn FROM kassa_cursors WHERE shard = $1", &[&shard]).await.unwrap().map(|r| r.get(0))
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

type Columns = Vec<(String, String, String, Option<String>, Option<i32>)>;

async fn columns(db: &Client, table: &str) -> Columns {
    db.query(
        "SELECT column_name::text, data_type::text, is_nullable::text, column_default::text, numeric_precision::int \
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

async fn indexes(db: &Client, table: &str) -> Vec<(String, String)> {
    db.query("SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1", &[&table])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn col(name: &str, ty: &str, nullable: &str, default: Option<&str>) -> (String, String, String, Option<String>, Option<i32>) {
    (name.into(), ty.into(), nullable.into(), default.map(str::to_string), None)
}

#[tokio::test]
async fn schema_is_the_old_tables_exactly() {
    let db = TestDb::new("schema").await;
    let connect = connector(&db.url, None);
    connect.connect(0, 1).await.expect("connect");
    // Idempotent: a second writer (or a restart) finds everything in place.
    connect.connect(0, 1).await.expect("connect again");
    let c = db.client().await;

    let tz = "timestamp with time zone";
    let products = vec![
        col("id", "bigint", "NO", Some("nextval('products_id_seq'::regclass)")),
        col("name", "text", "YES", None),
        col("description", "text", "YES", None),
        col("price", "numeric", "YES", None),
        col("stock", "bigint", "YES", None),
        col("category", "text", "YES", None),
        col("created_at", tz, "YES", None),
        col("updated_at", tz, "YES", None),
    ];
    let mut got = columns(&c, "products").await;
    // bigint reports its binary precision (64); numeric without precision reports none.
    for (name, _, _, _, precision) in &mut got {
        if name == "id" || name == "stock" {
            assert_eq!(*precision, Some(64));
            *precision = None;
        }
    }
    assert_eq!(got, products);
    assert_eq!(
        indexes(&c, "products").await,
        vec![("products_pkey".into(), "CREATE UNIQUE INDEX products_pkey ON public.products USING btree (id)".into())]
    );
    let pk: String = c
        .query_one("SELECT conname::text FROM pg_constraint WHERE conrelid = 'products'::regclass AND contype = 'p'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pk, "products_pkey");

    let notifications = vec![
        col("id", "text", "NO", None),
        col("user_id", "text", "NO", None),
        col("title", "text", "NO", None),
        col("message", "text", "NO", None),
        col("type", "text", "NO", None),
        col("status", "text", "NO", Some("'pending'::text")),
        col("priority", "text", "NO", Some("'normal'::text")),
        col("channel", "text", "NO", None),
        col("template_id", "text", "YES", None),
        col("data", "json", "YES", None),
        col("created_at", tz, "YES", None),
        col("updated_at", tz, "YES", None),
        col("sent_at", tz, "YES", None),
        col("read_at", tz, "YES", None),
        col("expires_at", tz, "YES", None),
    ];
    assert_eq!(columns(&c, "notifications").await, notifications);
    assert_eq!(
        indexes(&c, "notifications").await,
        vec![
            (
                "idx_notifications_template_id".into(),
                "CREATE INDEX idx_notifications_template_id ON public.notifications USING btree (template_id)".into()
            ),
            (
                "idx_notifications_user_id".into(),
                "CREATE INDEX idx_notifications_user_id ON public.notifications USING btree (user_id)".into()
            ),
            ("notifications_pkey".into(), "CREATE UNIQUE INDEX notifications_pkey ON public.notifications USING btree (id)".into()),
        ]
    );

    // The printed DDL is what connect applies: run by hand into another database, it gives the same.
    let by_hand = TestDb::new("schema_by_hand").await;
    let h = by_hand.client().await;
    h.batch_execute(&connect.schema()).await.expect("the printed schema runs");
    for table in ["products", "notifications", "kassa_versions", "kassa_cursors"] {
        assert_eq!(columns(&h, table).await, columns(&c, table).await, "{table}");
        assert_eq!(indexes(&h, table).await, indexes(&c, table).await, "{table}");
    }
    // And a target connects to the hand-made schema as it is.
    connector(&by_hand.url, None).connect(0, 1).await.expect("connect to a schema made by hand");
}

#[tokio::test]
async fn rows_hold_the_old_shapes() {
    let db = TestDb::new("shapes").await;
    let connect = connector(&db.url, None);
    let mut target = connect.connect(0, 1).await.unwrap();
    let macbook = Product { name: "MacBook Pro 16-inch".into(), ..product(1, 249_999, 11) };
    let shoes = Product { name: "Nike Air Max 270".into(), ..product(4, 15_000, 12) };
    let half = product(7, 50, 13);
    let n = notification("n-1", "user-1", 14);
    let bare =
        Notification { template_id: String::new(), data: Vec::new(), sent_at: None, expires_at: None, ..notification("n-2", "user-2", 15) };
    let basket = Basket {
        id: "b-1".into(),
        user_id: "user-1".into(),
        lines: Vec::new(),
        created_at: T0,
        updated_at: T0,
        expires_at: T0,
        version: 16,
    };
    let records = vec![
        put(11, &macbook),
        put(12, &shoes),
        put(13, &half),
        put_n(14, &n),
        put_n(15, &bare),
        FeedRecord { shard: 0, lsn: 16, event: Event::BasketPut { basket: basket.clone(), cause: BasketCause::Created } },
    ];
    target.apply(&records, 17).await.unwrap();
    let c = db.client().await;

    // numeric holds the exact decimal, as pgx wrote GORM's float64: shortest text, `150`, not `150.00`.
    let row = product_row(&c, 1).await.unwrap();
    assert_eq!(
        row,
        ("MacBook Pro 16-inch".into(), "Home & Kitchen <deluxe>".into(), "2499.99".into(), 10, "Electronics".into(), T0, T0 + 1)
    );
    assert_eq!(product_row(&c, 4).await.unwrap().2, "150");
    assert_eq!(product_row(&c, 7).await.unwrap().2, "0.5");
    // The old readers scan price into a float64: it is the float they wrote.
    let as_float: f64 = c.query_one("SELECT price::float8 FROM products WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(as_float, 2499.99);

    let r = c
        .query_one(
            "SELECT user_id, title, message, \"type\", status, priority, channel, template_id, data::text, \
             data->>'amount', (extract(epoch FROM created_at) * 1000000)::bigint, \
             (extract(epoch FROM updated_at) * 1000000)::bigint, (extract(epoch FROM sent_at) * 1000000)::bigint, \
             read_at IS NULL, (extract(epoch FROM expires_at) * 1000000)::bigint FROM notifications WHERE id = 'n-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "user-1");
    assert_eq!(r.get::<_, String>(1), "Payment Successful");
    assert_eq!(r.get::<_, String>(2), "Your payment has been processed.");
    assert_eq!(r.get::<_, String>(3), "payment");
    assert_eq!(r.get::<_, String>(4), "sent");
    assert_eq!(r.get::<_, String>(5), "high");
    assert_eq!(r.get::<_, String>(6), "email");
    assert_eq!(r.get::<_, Option<String>>(7).as_deref(), Some("tpl-receipt"));
    // Go's json.Marshal of the old map[string]string: keys sorted, `&` escaped.
    assert_eq!(r.get::<_, String>(8), r#"{"amount":"99.99 \u0026 more","payment_id":"pay_1"}"#);
    assert_eq!(r.get::<_, String>(9), "99.99 & more");
    assert_eq!(r.get::<_, i64>(10), T0);
    assert_eq!(r.get::<_, i64>(11), T0 + 2);
    assert_eq!(r.get::<_, i64>(12), T0 + 3);
    assert!(r.get::<_, bool>(13));
    assert_eq!(r.get::<_, i64>(14), T0 + 86_400_000_000);

    let r = c
        .query_one("SELECT template_id, data IS NULL, sent_at IS NULL, expires_at IS NULL FROM notifications WHERE id = 'n-2'", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, Option<String>>(0), None, "an empty template id is NULL");
    assert!(r.get::<_, bool>(1), "no data is NULL");
    assert!(r.get::<_, bool>(2) && r.get::<_, bool>(3));

    // Baskets are not this target's; nothing else appeared.
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 3);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications").await, 2);
    assert_eq!(target.render(&Entity::Basket(basket)), Vec::new());

    // read_back and render agree, and the canonical text is the row as stored.
    let mut expected = BTreeMap::new();
    for e in [Entity::Product(macbook), Entity::Product(shoes), Entity::Product(half), Entity::Notification(n), Entity::Notification(bare)]
    {
        expected.extend(target.render(&e));
    }
    let back = target.read_back().await.unwrap();
    assert_eq!(back, expected);
    let text: serde_json::Value = serde_json::from_str(&back["product:4"]).unwrap();
    assert_eq!(text["price"], "150");
    assert_eq!(text["stock"], 10);
    assert_eq!(text["created_at"], rfc3339(T0).as_str());
    let text: serde_json::Value = serde_json::from_str(&back["notification:n-2"]).unwrap();
    assert_eq!(text["template_id"], serde_json::Value::Null);
    assert_eq!(text["data"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_older_record_changes_nothing() {
    let db = TestDb::new("guard").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let c = db.client().await;
    let (r10, p10) = at(Product { name: "ten".into(), ..product(5, 100, 0) }, 10);
    target.apply(std::slice::from_ref(&r10), 11).await.unwrap();

    // An older record, and the same version again with other content: both pass by.
    let (r5, _) = at(Product { name: "five".into(), ..product(5, 999, 0) }, 5);
    let same = put(10, &Product { name: "ten again".into(), ..p10.clone() });
    target.apply(&[r5, same], 12).await.unwrap();
    assert_eq!(product_row(&c, 5).await.unwrap().0, "ten");
    assert_eq!(product_row(&c, 5).await.unwrap().2, "1");
    assert_eq!(version_of(&c, "product", "5").await, Some((10, false)));

    let (r20, _) = at(Product { name: "twenty".into(), ..product(5, 100, 0) }, 20);
    target.apply(&[r20], 21).await.unwrap();
    assert_eq!(product_row(&c, 5).await.unwrap().0, "twenty");

    // Within one batch the last change of a row wins, whatever the order of versions around it.
    let n1 = notification("n-g", "user-9", 30);
    let n2 = Notification { title: "second".into(), version: 31, ..n1.clone() };
    target.apply(&[put_n(30, &n1), put_n(31, &n2)], 32).await.unwrap();
    let title: String = c.query_one("SELECT title FROM notifications WHERE id = 'n-g'", &[]).await.unwrap().get(0);
    assert_eq!(title, "second");
    target.apply(&[put_n(30, &n1)], 33).await.unwrap();
    let title: String = c.query_one("SELECT title FROM notifications WHERE id = 'n-g'", &[]).await.unwrap().get(0);
    assert_eq!(title, "second");
}

#[tokio::test]
async fn a_tombstone_stops_a_replayed_upsert() {
    let db = TestDb::new("tombstone").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let c = db.client().await;
    let (r5, _) = at(product(8, 100, 0), 5);
    let n = notification("n-t", "user-3", 6);
    target.apply(&[r5.clone(), put_n(6, &n)], 7).await.unwrap();
    target.apply(&[gone(7, 8), gone_n(8, &n)], 9).await.unwrap();
    assert_eq!(product_row(&c, 8).await, None);
    assert_eq!(version_of(&c, "product", "8").await, Some((7, true)));
    assert_eq!(version_of(&c, "notification", "n-t").await, Some((8, true)));

    // A replay after a rewind: the old upserts find the tombstones and pass by.
    target.apply(&[r5, put_n(6, &n)], 9).await.unwrap();
    assert_eq!(product_row(&c, 8).await, None);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications").await, 0);

    // A re-creation is newer than the deletion.
    let (r12, _) = at(product(8, 300, 0), 12);
    target.apply(&[r12], 13).await.unwrap();
    assert_eq!(product_row(&c, 8).await.unwrap().2, "3");
    assert_eq!(version_of(&c, "product", "8").await, Some((12, false)));

    // Deleted and re-created within one batch: the re-creation stands.
    let (r15, _) = at(product(9, 100, 0), 15);
    let (r17, _) = at(product(9, 200, 0), 17);
    target.apply(&[r15, gone(16, 9), r17], 18).await.unwrap();
    assert_eq!(product_row(&c, 9).await.unwrap().2, "2");
}

#[tokio::test]
async fn the_cursor_commits_with_the_rows() {
    let db = TestDb::new("cursor").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let c = db.client().await;
    assert_eq!(target.cursor().await.unwrap(), None, "never written: bootstrap");

    let (r1, _) = at(product(1, 100, 0), 1);
    target.apply(&[r1], 2).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(2));
    target.apply(&[], 5).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(5), "an empty batch only moves the cursor");

    // A batch PostgreSQL refuses (a NUL byte in text) writes nothing, cursor included, and names the record.
    let (r5, _) = at(product(2, 100, 0), 5);
    let (bad, _) = at(Product { name: "nul\0byte".into(), ..product(3, 100, 0) }, 6);
    let n = notification("n-c", "user-1", 7);
    let err = target.apply(&[r5.clone(), bad, put_n(7, &n)], 8).await.unwrap_err();
    match err {
        TargetError::Rejected { lsn, reason } => {
            assert_eq!(lsn, 6);
            assert!(reason.contains("22021") && reason.contains("0x00"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(target.cursor().await.unwrap(), Some(5));
    assert_eq!(cursor_row(&c, 0).await, Some(5));
    assert_eq!(product_row(&c, 2).await, None);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications").await, 0);
    assert_eq!(version_of(&c, "product", "2").await, None, "the guard's versions rolled back too");

    // A NUL in a notification is refused the same way; the runner then goes on without the record.
    let bad_n = Notification { message: "a\0b".into(), ..notification("n-bad", "user-1", 8) };
    let err = target.apply(&[put_n(8, &bad_n)], 9).await.unwrap_err();
    assert!(matches!(err, TargetError::Rejected { lsn: 8, .. }), "{err:?}");
    target.apply(&[r5, put_n(7, &n)], 9).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(9));
    assert!(product_row(&c, 2).await.is_some());

    // Per shard: another shard's writer has its own cursor row.
    let mut other = connector(&db.url, None).connect(1, 2).await.unwrap();
    assert_eq!(other.cursor().await.unwrap(), None);
    other.apply(&[], 40).await.unwrap();
    assert_eq!(cursor_row(&c, 1).await, Some(40));
    assert_eq!(target.cursor().await.unwrap(), Some(9));
}

#[tokio::test]
async fn a_lost_connection_is_unavailable_and_then_reopened() {
    let db = TestDb::new("reconnect").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let admin = client(&admin_url()).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the target's session was there to end");
    let (r1, _) = at(product(1, 100, 0), 1);
    // The first write may find the connection broken (Unavailable: the runner retries) or already
    // known closed; either way the next attempt reconnects and writes.
    match target.apply(std::slice::from_ref(&r1), 2).await {
        Ok(()) => {}
        Err(TargetError::Unavailable(_)) => target.apply(&[r1], 2).await.expect("the retry reconnects"),
        Err(other) => panic!("a lost connection is not a rejection: {other:?}"),
    }
    assert_eq!(target.cursor().await.unwrap(), Some(2));
    assert!(product_row(&db.client().await, 1).await.is_some());
}

#[tokio::test]
async fn two_databases_each_with_its_cursor() {
    let catalog = TestDb::new("catalog").await;
    let notes = TestDb::new("notes").await;
    let connect = connector(&catalog.url, Some(&notes.url));
    assert!(connect.schema().contains("Notifications database"));
    let mut target = connect.connect(0, 1).await.unwrap();
    let (a, b) = (catalog.client().await, notes.client().await);
    assert_eq!(count(&a, "SELECT count(*) FROM pg_tables WHERE tablename = 'notifications'").await, 0);
    assert_eq!(count(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 'products'").await, 0);

    let (r1, p1) = at(product(1, 100, 0), 1);
    let n = notification("n-2", "user-1", 2);
    target.apply(&[r1.clone(), put_n(2, &n)], 3).await.unwrap();
    assert!(product_row(&a, 1).await.is_some());
    assert_eq!(count(&b, "SELECT count(*) FROM notifications WHERE id = 'n-2'").await, 1);
    assert_eq!(version_of(&a, "product", "1").await, Some((1, false)));
    assert_eq!(version_of(&b, "notification", "n-2").await, Some((2, false)));
    assert_eq!((cursor_row(&a, 0).await, cursor_row(&b, 0).await), (Some(3), Some(3)));
    assert_eq!(target.cursor().await.unwrap(), Some(3));

    // A crash between the two commits leaves one database behind: the cursor is the lower one, and the
    // records re-applied to both change nothing where they already were.
    b.execute("UPDATE kassa_cursors SET next_lsn = 1 WHERE shard = 0", &[]).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), Some(1));
    let before = product_row(&a, 1).await;
    target.apply(&[r1, put_n(2, &n)], 3).await.unwrap();
    assert_eq!(product_row(&a, 1).await, before);
    assert_eq!(target.cursor().await.unwrap(), Some(3));
    b.execute("DELETE FROM kassa_cursors", &[]).await.unwrap();
    assert_eq!(target.cursor().await.unwrap(), None, "a database never written needs the bootstrap");
    target.apply(&[], 3).await.unwrap();

    // A refusal in either database writes nothing in both.
    let (r4, _) = at(Product { name: "new".into(), ..p1 }, 4);
    let bad = Notification { title: "\0".into(), ..notification("n-5", "user-1", 5) };
    let err = target.apply(&[r4.clone(), put_n(5, &bad)], 6).await.unwrap_err();
    assert!(matches!(err, TargetError::Rejected { lsn: 5, .. }), "{err:?}");
    assert_eq!(product_row(&a, 1).await.unwrap().0, "Product 1");
    assert_eq!((cursor_row(&a, 0).await, cursor_row(&b, 0).await), (Some(3), Some(3)));

    // read_back gathers both databases.
    target.apply(&[r4], 6).await.unwrap();
    let back = target.read_back().await.unwrap();
    assert_eq!(back.keys().cloned().collect::<Vec<_>>(), vec!["notification:n-2".to_string(), "product:1".to_string()]);
}

#[tokio::test]
async fn one_database_under_two_urls_is_one_database() {
    let db = TestDb::new("alias").await;
    let alias = format!("{}?application_name=kassa-alias", db.url);
    let connect = connector(&db.url, Some(&alias));
    let mut target = connect.connect(0, 1).await.unwrap();
    let (r1, _) = at(product(1, 100, 0), 1);
    let n = notification("n-2", "user-1", 2);
    // Two transactions on one database would wait on each other's cursor row forever; the bound makes
    // that a failure instead of a hung test.
    tokio::time::timeout(Duration::from_secs(30), target.apply(&[r1, put_n(2, &n)], 3))
        .await
        .expect("one transaction, not two waiting on each other")
        .unwrap();
    let c = db.client().await;
    assert_eq!(count(&c, "SELECT count(*) FROM kassa_cursors").await, 1);
    assert_eq!(count(&c, "SELECT count(*) FROM products").await + count(&c, "SELECT count(*) FROM notifications").await, 2);
    assert_eq!(target.cursor().await.unwrap(), Some(3));
}

#[tokio::test]
async fn bootstrap_copies_and_removes_only_this_shards_stale_rows() {
    let db = TestDb::new("bootstrap").await;
    let c = db.client().await;
    // The old estate's table and seed rows, written by the old service (no versions).
    c.batch_execute(
        "CREATE TABLE products (id bigserial, name text, description text, price numeric, stock bigint, category text, \
         created_at timestamptz, updated_at timestamptz, CONSTRAINT products_pkey PRIMARY KEY (id)); \
         INSERT INTO products (name, price, stock, category, created_at, updated_at) \
         SELECT 'seed ' || g, 9.99, 1, 'Books', now(), now() FROM generate_series(1, 10) g",
    )
    .await
    .unwrap();
    let shards = 2;
    let connect = connector(&db.url, None);
    let mut t0 = connect.connect(0, shards as usize).await.unwrap();
    let mut t1 = connect.connect(1, shards as usize).await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 10, "connect leaves the old rows alone");

    // Shard 1's own rows.
    let (r101, _) = at(product(101, 100, 0), 40);
    let other_user = user_of_shard(1, shards, 0);
    let other_n = notification("n-other", &other_user, 41);
    t1.apply(&[r101, put_n(41, &other_n)], 42).await.unwrap();
    // Shard 0: a row newer than the snapshot (kept), a stale one the snapshot lacks (removed).
    let user = user_of_shard(0, shards, 0);
    let (r200, p200) = at(product(200, 100, 0), 900);
    let (r202, _) = at(product(202, 100, 0), 100);
    let stale_n = notification("n-stale", &user, 101);
    let newer_n = notification("n-newer", &user, 901);
    t0.apply(&[r202.clone(), put_n(101, &stale_n)], 102).await.unwrap();
    t0.apply(&[r200, put_n(901, &newer_n)], 902).await.unwrap();

    // The snapshot at LSN 500: 1000 products of shard 0, notifications of shard-0 users, and product 200
    // in an older state than the mirror already holds.
    let snapshot = 500;
    let mut entities: Vec<Entity> = (0..1000u64).map(|i| Entity::Product(product(1000 + 2 * i, 100 + i as i64, 1 + i % 400))).collect();
    for i in 0..50 {
        entities.push(Entity::Notification(notification(&format!("n-snap-{i}"), &user_of_shard(0, shards, i), 200 + i as u64)));
    }
    entities.push(Entity::Product(Product { name: "older".into(), ..product(200, 1, 400) }));
    for e in &entities {
        if let Entity::Product(p) = e {
            assert_eq!(shard_of_product(p.id, shards), 0);
        }
    }
    let present: HashSet<String> = entities.iter().map(Entity::key).collect();
    let (first, second) = entities.split_at(600);
    t0.load(first).await.unwrap();
    t0.load(second).await.unwrap();
    t0.finish_load(snapshot, &present).await.unwrap();

    assert_eq!(t0.cursor().await.unwrap(), Some(snapshot + 1));
    assert_eq!(t1.cursor().await.unwrap(), Some(42), "the other shard's cursor is its own");
    // Loaded rows are exact.
    assert_eq!(product_row(&c, 1000 + 2 * 999).await.unwrap(), {
        let p = product(2998, 1099, 0);
        (p.name, p.description, "10.99".to_string(), 10, p.category, T0, T0 + 1)
    });
    assert_eq!(count(&c, "SELECT count(*) FROM products WHERE id >= 1000").await, 1000);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications WHERE id LIKE 'n-snap-%'").await, 50);
    // Newer than the snapshot: kept, not overwritten by the snapshot's older state.
    assert_eq!(product_row(&c, 200).await.unwrap().0, p200.name);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications WHERE id = 'n-newer'").await, 1);
    // Stale rows of shard 0 are gone with a tombstone at the snapshot; the old seed's even ids too.
    assert_eq!(product_row(&c, 202).await, None);
    assert_eq!(version_of(&c, "product", "202").await, Some((500, true)));
    assert_eq!(count(&c, "SELECT count(*) FROM notifications WHERE id = 'n-stale'").await, 0);
    assert_eq!(version_of(&c, "notification", "n-stale").await, Some((500, true)));
    assert_eq!(count(&c, "SELECT count(*) FROM products WHERE id <= 10").await, 5);
    assert_eq!(count(&c, "SELECT count(*) FROM products WHERE id <= 10 AND id % 2 = 0").await, 0);
    // Shard 1's rows are untouched.
    assert!(product_row(&c, 101).await.is_some());
    assert_eq!(count(&c, "SELECT count(*) FROM notifications WHERE id = 'n-other'").await, 1);
    // A replay of the stale row's old record cannot bring it back.
    t0.apply(&[r202], snapshot + 1).await.unwrap();
    assert_eq!(product_row(&c, 202).await, None);
    // The old writers' sequence is past every id.
    let next: i64 = c.query_one("SELECT nextval('products_id_seq')", &[]).await.unwrap().get(0);
    let top: i64 = c.query_one("SELECT max(id) FROM products", &[]).await.unwrap().get(0);
    assert!(next > top, "nextval {next} must be past max(id) {top}");

    // read_back is exactly this shard's rows, as render writes them.
    let mut expected = BTreeMap::new();
    for e in entities.iter().filter(|e| e.key() != "product:200") {
        expected.extend(t0.render(e));
    }
    expected.extend(t0.render(&Entity::Product(p200)));
    expected.extend(t0.render(&Entity::Notification(newer_n)));
    assert_eq!(t0.read_back().await.unwrap(), expected);
    let back1 = t1.read_back().await.unwrap();
    assert!(back1.contains_key("product:101") && back1.contains_key("notification:n-other"));
    assert!(back1.keys().all(|k| !expected.contains_key(k)));
}

#[tokio::test]
async fn a_refused_snapshot_entity_is_rejected_with_its_version() {
    let db = TestDb::new("load_nul").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let entities = vec![
        Entity::Product(product(1, 100, 10)),
        Entity::Product(Product { category: "x\0y".into(), ..product(2, 100, 11) }),
        Entity::Notification(notification("n-1", "user-1", 12)),
    ];
    let err = target.load(&entities).await.unwrap_err();
    assert!(matches!(err, TargetError::Rejected { lsn: 11, .. }), "{err:?}");
    let c = db.client().await;
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 0, "nothing of the chunk is written");
    assert_eq!(count(&c, "SELECT count(*) FROM notifications").await, 0);
    target.load(&[entities[0].clone(), entities[2].clone()]).await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 1);
    // Loading the same chunk again changes nothing (versions guard the load too).
    target.load(&[Entity::Product(Product { name: "same version".into(), ..product(1, 100, 10) })]).await.unwrap();
    assert_eq!(product_row(&c, 1).await.unwrap().0, "Product 1");
}

#[tokio::test]
async fn a_large_batch_is_one_transaction() {
    let db = TestDb::new("batch").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let records: Vec<FeedRecord> = (1..=500u64)
        .map(|lsn| {
            if lsn % 2 == 0 {
                at(product(lsn, lsn as i64, 0), lsn).0
            } else {
                put_n(lsn, &notification(&format!("n-{lsn}"), "user-1", lsn))
            }
        })
        .collect();
    target.apply(&records, 501).await.unwrap();
    let c = db.client().await;
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 250);
    assert_eq!(count(&c, "SELECT count(*) FROM notifications").await, 250);
    assert_eq!(count(&c, "SELECT count(*) FROM kassa_versions").await, 500);
    // The versions the guard stored are the entities' own.
    assert_eq!(count(&c, "SELECT count(*) FROM kassa_versions WHERE entity = 'product' AND version::text = id").await, 250);
    assert_eq!(target.cursor().await.unwrap(), Some(501));
}

#[tokio::test]
async fn an_id_past_bigint_is_rejected_before_any_write() {
    let db = TestDb::new("bigint").await;
    let mut target = connector(&db.url, None).connect(0, 1).await.unwrap();
    let (ok, _) = at(product(1, 100, 0), 3);
    let huge = product(u64::MAX, 100, 4);
    let err = target.apply(&[ok, put(4, &huge)], 5).await.unwrap_err();
    assert!(matches!(&err, TargetError::Rejected { lsn: 4, reason } if reason.contains("bigint")), "{err:?}");
    let c = db.client().await;
    assert_eq!(count(&c, "SELECT count(*) FROM products").await, 0);
    assert_eq!(target.cursor().await.unwrap(), None);
    // verify will show it as a row the mirror cannot have.
    let rendered = target.render(&Entity::Product(huge));
    assert_eq!(rendered.len(), 1);
    assert!(rendered[0].1.starts_with("not representable in PostgreSQL"), "{rendered:?}");
}
