//! The Redis target against the real Redis of `deploy/local/services.sh`, in database indexes of its own
//! (5 and 6, emptied first): `basket:<user_id>` byte for byte as the old basket service wrote it, expiring
//! at the basket's `expires_at`; the version guard and tombstones; the cursor set by the same script as the
//! data (or not at all); the bootstrap's removal of what the snapshot lacks; `read_back` against `render`.

use std::collections::{BTreeMap, HashSet};

use ::redis::AsyncCommands;
use kassa_adapters::config::RedisConfig;
use kassa_adapters::{Connect, Entity, RedisConnect, Target, TargetError};
use kassa_engine::placement::shard_of_user;
use kassa_engine::{Basket, BasketCause, BasketGone, BasketLine, Event, FeedRecord};

/// 2024-05-01T10:20:30.123456Z.
const T0: i64 = 1_714_558_830_123_456;
/// 2100-01-01T00:00:00.123456Z: far enough ahead that no test outlives it.
const FAR: i64 = 4_102_444_800_123_456;
const FAR_MS: i64 = 4_102_444_800_123;
const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;

fn url(db: u8) -> String {
    let base = std::env::var("KASSA_REDIS_URL")
        .unwrap_or_else(|_| panic!("KASSA_REDIS_URL is not set: start the services (deploy/local/services.sh up) and eval its `env`"));
    let (host, _) = base.rsplit_once('/').expect("a Redis URL with a database index");
    format!("{host}/{db}")
}

/// A client of database `db`, emptied.
async fn fresh(db: u8) -> (RedisConnect, ::redis::aio::MultiplexedConnection) {
    let client = ::redis::Client::open(url(db)).expect("Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis at KASSA_REDIS_URL");
    let () = ::redis::cmd("FLUSHDB").query_async(&mut conn).await.expect("FLUSHDB");
    (RedisConnect::new(&RedisConfig { url: url(db), ..RedisConfig::default() }), conn)
}

fn basket(user_id: &str, version: u64, lines: Vec<BasketLine>, expires_at: i64) -> Basket {
    Basket {
        id: format!("basket_{user_id}_1714558830"),
        user_id: user_id.into(),
        lines,
        created_at: T0,
        updated_at: T0 + 270_376_544,
        expires_at,
        version,
    }
}

fn line(product_id: u64, name: &str, price: i64, quantity: i64, category: &str) -> BasketLine {
    BasketLine { product_id, name: name.into(), price, category: category.into(), quantity }
}

fn put(b: &Basket) -> FeedRecord {
    FeedRecord { shard: 0, lsn: b.version, event: Event::BasketPut { basket: b.clone(), cause: BasketCause::ItemAdded } }
}

fn deleted(user_id: &str, version: u64) -> FeedRecord {
    let event = Event::BasketDeleted {
        user_id: user_id.into(),
        basket_id: format!("basket_{user_id}_1714558830"),
        version,
        why: BasketGone::Deleted,
    };
    FeedRecord { shard: 0, lsn: version, event }
}

async fn get(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    conn.get(key).await.expect("GET")
}

/// The key's absolute expiry in Unix ms (-1: none, -2: no key).
async fn expiry(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    ::redis::cmd("PEXPIRETIME").arg(key).query_async(conn).await.expect("PEXPIRETIME")
}

#[tokio::test]
async fn basket_keys_are_the_old_json_and_only_newer_versions_win() {
    let (connect, mut conn) = fresh(5).await;
    let mut target = connect.connect(0, 1).await.expect("connect");
    assert_eq!(target.cursor().await.expect("cursor"), None, "never written");

    let lines = vec![line(7, "Chef's Knife & Board", 2999, 2, "Home & Kitchen"), line(9, "Gift <card>", 10, 3, "")];
    let b = basket("redis-user-1", 5, lines, FAR);
    target.apply(&[put(&b)], 6).await.expect("apply");

    // §3.4, written out by hand: field order, `&`/`<`/`>` escaped as Go does, exact decimals (0.1 × 3 is
    // 0.3), no category on the line without one, Go's time text, no metadata.
    let expected = concat!(
        r#"{"id":"basket_redis-user-1_1714558830","user_id":"redis-user-1","items":["#,
        r#"{"product_id":7,"name":"Chef's Knife \u0026 Board","price":29.99,"quantity":2,"subtotal":59.98,"category":"Home \u0026 Kitchen"},"#,
        r#"{"product_id":9,"name":"Gift \u003ccard\u003e","price":0.1,"quantity":3,"subtotal":0.3}],"#,
        r#""total":60.28,"created_at":"2024-05-01T10:20:30.123456Z","updated_at":"2024-05-01T10:25:00.5Z","expires_at":"2100-01-01T00:00:00.123456Z"}"#
    );
    assert_eq!(get(&mut conn, "basket:redis-user-1").await.as_deref(), Some(expected));
    assert_eq!(expiry(&mut conn, "basket:redis-user-1").await, FAR_MS, "the key expires at the basket's expires_at");
    assert_eq!(get(&mut conn, "kassa:version:basket:redis-user-1").await.as_deref(), Some("5"));
    assert_eq!(expiry(&mut conn, "kassa:version:basket:redis-user-1").await, FAR_MS + WEEK_MS, "the version outlives the basket");
    assert_eq!(target.cursor().await.expect("cursor"), Some(6));

    // An emptied basket keeps `items: []`.
    let empty = basket("redis-user-2", 7, vec![], FAR);
    target.apply(&[put(&empty)], 8).await.expect("apply");
    let held = get(&mut conn, "basket:redis-user-2").await.expect("held");
    assert!(held.contains(r#""items":[],"total":0,"#), "{held}");

    // Older and same-version records change nothing; the cursor still moves.
    let older = basket("redis-user-1", 3, vec![], FAR);
    let mut same = b.clone();
    same.lines.clear();
    target.apply(&[put(&older)], 9).await.expect("apply");
    target.apply(&[put(&same)], 10).await.expect("apply");
    assert_eq!(get(&mut conn, "basket:redis-user-1").await.as_deref(), Some(expected));
    assert_eq!(target.cursor().await.expect("cursor"), Some(10));

    // Within one batch the last record of a user wins.
    let mut first = b.clone();
    first.version = 11;
    first.lines.truncate(1);
    let mut second = first.clone();
    second.version = 12;
    second.lines[0].quantity = 5;
    target.apply(&[put(&first), put(&second)], 13).await.expect("apply");
    let held = get(&mut conn, "basket:redis-user-1").await.expect("held");
    assert!(held.contains(r#""quantity":5,"subtotal":149.95"#) && held.contains(r#""total":149.95"#), "{held}");

    // Deleted: the key goes, a tombstone stays (at least a week, and no shorter than the version key it
    // replaces), and a replay of an older write cannot bring the basket back.
    target.apply(&[deleted("redis-user-1", 14)], 15).await.expect("apply");
    assert_eq!(get(&mut conn, "basket:redis-user-1").await, None);
    assert_eq!(get(&mut conn, "kassa:version:basket:redis-user-1").await.as_deref(), Some("14"));
    let tombstone_expiry = expiry(&mut conn, "kassa:version:basket:redis-user-1").await;
    assert!((FAR_MS + WEEK_MS - 5..=FAR_MS + WEEK_MS + 5).contains(&tombstone_expiry), "{tombstone_expiry}");
    target.apply(&[put(&second), put(&b)], 16).await.expect("replay");
    assert_eq!(get(&mut conn, "basket:redis-user-1").await, None, "the tombstone holds");
    // A basket created after the deletion is written.
    let recreated = basket("redis-user-1", 17, vec![], FAR);
    target.apply(&[put(&recreated)], 18).await.expect("apply");
    assert!(get(&mut conn, "basket:redis-user-1").await.is_some());

    // An expired basket is not written (the old service refused to save one); its version is kept.
    let expired = basket("redis-user-3", 19, vec![line(1, "x", 100, 1, "")], T0 + 86_400_000_000);
    target.apply(&[put(&expired)], 20).await.expect("apply");
    assert_eq!(get(&mut conn, "basket:redis-user-3").await, None);
    assert_eq!(get(&mut conn, "kassa:version:basket:redis-user-3").await.as_deref(), Some("19"));
    let ttl: i64 = conn.pttl("kassa:version:basket:redis-user-3").await.expect("PTTL");
    assert!(ttl > WEEK_MS - 60_000, "a tombstone lives about a week: {ttl}");

    // The cursor commits with the data or not at all: a batch that fails in Redis (a version key of the
    // wrong type, found while reading, before any write) writes neither the other basket nor the cursor.
    let () = conn.hset("kassa:version:basket:redis-user-5", "f", "v").await.expect("HSET");
    let fine = basket("redis-user-4", 21, vec![], FAR);
    let blocked = basket("redis-user-5", 22, vec![], FAR);
    match target.apply(&[put(&fine), put(&blocked)], 23).await {
        Err(TargetError::Unavailable(reason)) => assert!(reason.contains("WRONGTYPE"), "{reason}"),
        other => panic!("expected the script to fail, got {other:?}"),
    }
    assert_eq!(get(&mut conn, "basket:redis-user-4").await, None);
    assert_eq!(target.cursor().await.expect("cursor"), Some(20));
    let () = conn.del("kassa:version:basket:redis-user-5").await.expect("DEL");
    target.apply(&[put(&fine), put(&blocked)], 23).await.expect("apply once fixed");
    assert!(get(&mut conn, "basket:redis-user-4").await.is_some() && get(&mut conn, "basket:redis-user-5").await.is_some());
    assert_eq!(target.cursor().await.expect("cursor"), Some(23));

    // What Redis holds reads back exactly as the target renders the engine's baskets (expired: none).
    let held = target.read_back().await.expect("read back");
    let rendered: BTreeMap<String, String> =
        [&empty, &recreated, &fine, &blocked, &expired].iter().flat_map(|b| target.render(&Entity::Basket((*b).clone()))).collect();
    assert_eq!(held, rendered);
    assert_eq!(held.len(), 4);

    // A server that is not there is unavailable (retry).
    let nowhere = RedisConnect::new(&RedisConfig { url: "redis://127.0.0.1:1/5".into(), ..RedisConfig::default() });
    assert!(matches!(nowhere.connect(0, 1).await, Err(TargetError::Unavailable(_))));
}

/// `n` user ids that shard `shard` of `shards` owns.
fn users_of(shard: usize, shards: u32, prefix: &str, n: usize) -> Vec<String> {
    (0..).map(|i| format!("{prefix}-{i}")).filter(|u| shard_of_user(u, shards) as usize == shard).take(n).collect()
}

#[tokio::test]
async fn bootstrap_loads_and_removes_only_what_the_snapshot_lacks() {
    let (connect, mut conn) = fresh(6).await;
    let shards = 2;
    let mut mine = connect.connect(0, shards as usize).await.expect("shard 0");
    let mut theirs = connect.connect(1, shards as usize).await.expect("shard 1");
    let users = users_of(0, shards, "boot", 603);
    let (stale_user, newer_user, legacy_user) = (&users[0], &users[1], &users[2]);
    let other_user = &users_of(1, shards, "boot", 1)[0];

    // Already in the mirror: a basket the snapshot no longer has, one written after the snapshot,
    // another shard's, and a key of the old estate that Kassa never wrote (no version key).
    let stale = basket(stale_user, 5, vec![], FAR);
    let newer = basket(newer_user, 50, vec![], FAR);
    let others = basket(other_user, 4, vec![], FAR);
    mine.apply(&[put(&stale), put(&newer)], 51).await.expect("apply");
    theirs.apply(&[put(&others)], 5).await.expect("apply");
    let () = conn.set(format!("basket:{legacy_user}"), "{}").await.expect("SET");

    // The snapshot at LSN 20: 600 baskets (several scripts' worth), loaded in the runner's chunks.
    let loaded: Vec<Basket> =
        users[3..].iter().enumerate().map(|(i, u)| basket(u, 1 + i as u64 % 20, vec![line(1, "x & y", 250, 2, "c")], FAR)).collect();
    let entities: Vec<Entity> = loaded.iter().cloned().map(Entity::Basket).collect();
    for chunk in entities.chunks(512) {
        mine.load(chunk).await.expect("load");
    }
    let present: HashSet<String> = entities.iter().map(Entity::key).collect();
    mine.finish_load(20, &present).await.expect("finish load");

    let keys: Vec<String> = conn.keys("basket:*").await.expect("KEYS");
    assert_eq!(keys.len(), 602, "600 loaded, the newer one and the other shard's");
    let keys: HashSet<String> = keys.into_iter().collect();
    assert!(keys.contains(&format!("basket:{newer_user}")) && keys.contains(&format!("basket:{other_user}")));
    assert!(
        !keys.contains(&format!("basket:{stale_user}")) && !keys.contains(&format!("basket:{legacy_user}")),
        "what the snapshot lacks is gone"
    );
    for user in [stale_user, legacy_user] {
        assert_eq!(get(&mut conn, &format!("kassa:version:basket:{user}")).await.as_deref(), Some("20"), "tombstone at the snapshot");
    }
    assert_eq!(mine.cursor().await.expect("cursor"), Some(21));
    assert_eq!(theirs.cursor().await.expect("cursor"), Some(5), "another shard's cursor is its own");
    let sample = get(&mut conn, &format!("basket:{}", users[3])).await.expect("loaded");
    assert!(sample.contains(r#""name":"x \u0026 y","price":2.5,"quantity":2,"subtotal":5,"category":"c""#), "{sample}");
    assert_eq!(expiry(&mut conn, &format!("basket:{}", users[3])).await, FAR_MS);

    // A replay of the removed basket's old record does not bring it back.
    mine.apply(&[put(&stale)], 21).await.expect("replay");
    assert_eq!(get(&mut conn, &format!("basket:{stale_user}")).await, None);
    // Loading the same snapshot again changes nothing either.
    mine.load(&entities[..10]).await.expect("reload");
    assert_eq!(get(&mut conn, &format!("basket:{}", users[3])).await.as_deref(), Some(sample.as_str()));

    // Each shard reads back its own keys only, exactly as it renders them.
    let held = mine.read_back().await.expect("read back");
    let expected: BTreeMap<String, String> = loaded.iter().chain([&newer]).flat_map(|b| mine.render(&Entity::Basket(b.clone()))).collect();
    assert_eq!(held.len(), 601);
    assert_eq!(held, expected);
    let held = theirs.read_back().await.expect("read back");
    assert_eq!(held.into_iter().collect::<Vec<_>>(), theirs.render(&Entity::Basket(others)));
}
