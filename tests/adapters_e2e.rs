//! Kassa with all four adapters on, against the real PostgreSQL, MariaDB, Redis and Kafka of
//! `deploy/local/services.sh`: shopping flows through the HTTP API, then every target read with its own
//! client and compared with the engine — by `POST /admin/adapters/verify` (row by row, key by key) and by
//! hand against the old contract's shapes; Kafka read both read-committed and read-uncommitted.

mod common;
#[path = "common/estate.rs"]
mod estate;
#[path = "common/mirrors.rs"]
mod mirrors;

use std::collections::HashMap;

use common::Server;
use estate::Estate;
use mirrors::{following, verified};
use serde_json::{Value, json};

async fn create_product(s: &Server, name: &str, price: f64, stock: i64, category: &str) -> u64 {
    let (status, p) =
        s.send("POST", "/api/products", Some(json!({"name": name, "price": price, "stock": stock, "category": category}))).await;
    assert_eq!(status, 201, "{p}");
    p["id"].as_u64().expect("id")
}

async fn add(s: &Server, user: &str, product: u64, quantity: i64) {
    let (status, body) =
        s.send("POST", &format!("/api/baskets/{user}/items"), Some(json!({"product_id": product, "quantity": quantity}))).await;
    assert_eq!(status, 200, "{body}");
}

async fn pay(s: &Server, user: &str) -> (u16, Value) {
    s.send("POST", "/api/payments", Some(json!({"user_id": user, "method": "credit_card", "provider": "stripe"}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_mirrors_the_shop_as_the_old_consumers_read_it() {
    let estate = Estate::fresh("e2e", 7).await;
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &estate.toml(""), &["--seed-catalog", "false"]);
    following(&s, 4).await;

    // Catalog: created, edited, deleted.
    let lamp = create_product(&s, "Lamp & Shade", 19.99, 10, "Home & Kitchen").await;
    let chair = create_product(&s, "Chair", 49.5, 4, "Home").await;
    let gone = create_product(&s, "Gone", 1.0, 1, "X").await;
    let (status, _) = s
        .send("PUT", &format!("/api/products/{chair}"), Some(json!({"name": "Chair", "price": 45.0, "stock": 6, "category": "Home"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.send("DELETE", &format!("/api/products/{gone}"), None).await.0, 200);

    // A completed and then refunded payment, a failed one, a cancelled one, an open basket.
    add(&s, "ann", lamp, 2).await;
    add(&s, "ann", chair, 1).await;
    let (status, completed) = pay(&s, "ann").await;
    assert_eq!(status, 201, "{completed}");
    let completed_id = completed["id"].as_str().unwrap().to_string();
    let (status, body) = s.send("POST", &format!("/api/payments/{completed_id}/process"), None).await;
    assert_eq!(status, 200, "{body}");
    add(&s, "bob", lamp, 1).await;
    let (_, refunded) = pay(&s, "bob").await;
    let refunded_id = refunded["id"].as_str().unwrap().to_string();
    s.send("POST", &format!("/api/payments/{refunded_id}/process"), None).await;
    let (status, body) =
        s.send("POST", &format!("/api/payments/{refunded_id}/refund"), Some(json!({"amount": 19.99, "reason": "broken"}))).await;
    assert_eq!(status, 200, "{body}");
    add(&s, "cyd", chair, 1).await;
    let (_, cancelled) = pay(&s, "cyd").await;
    let cancelled_id = cancelled["id"].as_str().unwrap().to_string();
    assert_eq!(s.send("POST", &format!("/api/payments/{cancelled_id}/cancel"), None).await.0, 200);
    add(&s, "dee", chair, 1).await;
    let (_, failed) = pay(&s, "dee").await;
    let failed_id = failed["id"].as_str().unwrap().to_string();
    let (status, body) = s.send("PUT", &format!("/api/payments/{failed_id}"), Some(json!({"status": "failed"}))).await;
    assert_eq!(status, 200, "{body}");
    // A checkout its provider declines (the simulated provider, Stripe's decline token).
    add(&s, "fay", chair, 1).await;
    let checkout = json!({"user_id": "fay", "method": "credit_card", "provider": "simulated", "token": "tok_chargeDeclined"});
    let (status, declined) = s.send("POST", "/api/payments", Some(checkout)).await;
    assert_eq!(status, 201, "{declined}");
    let declined_id = declined["id"].as_str().unwrap().to_string();
    assert_eq!(s.send("POST", &format!("/api/payments/{declined_id}/process"), None).await.0, 402);
    add(&s, "eve", lamp, 3).await;
    // Notifications created by hand and read.
    let (status, note) = s
        .send(
            "POST",
            "/api/v1/notifications",
            Some(json!({"user_id": "eve", "title": "Hi", "message": "<b>welcome</b>", "type": "info", "channel": "in_app"})),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    let note_id = note["notification"]["id"].as_str().unwrap().to_string();
    assert_eq!(s.send("POST", &format!("/api/v1/notifications/{note_id}/read"), None).await.0, 200);

    let report = verified(&s).await;
    for adapter in ["postgres", "mariadb", "redis", "kafka"] {
        let a =
            report["adapters"].as_array().unwrap().iter().find(|a| a["adapter"] == adapter).unwrap_or_else(|| panic!("{adapter} verified"));
        let compared: u64 = a["shards"].as_array().unwrap().iter().map(|s| s["compared"].as_u64().unwrap()).sum();
        assert!(compared > 0, "{adapter} compared something: {a}");
    }

    // PostgreSQL, read as the old reporting reads it.
    let pg = estate.postgres_catalog().await;
    let rows = pg.query("SELECT id, name, price::text, stock, category FROM products ORDER BY id", &[]).await.unwrap();
    let products: Vec<(i64, String, String, i64, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(
        products,
        vec![
            (lamp as i64, "Lamp & Shade".into(), "19.99".into(), 8, "Home & Kitchen".into()),
            (chair as i64, "Chair".into(), "45".into(), 5, "Home".into()),
        ],
        "stock is the engine's available units (sold, refunded and restocked, released); the deleted product is gone"
    );
    let notes = estate.postgres_notifications().await;
    let row = notes
        .query_one("SELECT user_id, title, message, type, status, channel FROM notifications WHERE id = $1", &[&note_id])
        .await
        .unwrap();
    let note_row: (String, String, String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(note_row, ("eve".into(), "Hi".into(), "<b>welcome</b>".into(), "info".into(), "read".into(), "in_app".into()));

    // MariaDB, as the old payment reports read it.
    let statuses = estate.mariadb_statuses().await;
    let expect: HashMap<String, String> = [
        (completed_id.clone(), "completed"),
        (refunded_id.clone(), "refunded"),
        (cancelled_id.clone(), "cancelled"),
        (failed_id.clone(), "failed"),
        (declined_id.clone(), "failed"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    for (id, status) in &expect {
        assert_eq!(statuses.get(id), Some(status), "payment {id} in MariaDB");
    }
    assert_eq!(estate.mariadb_items(&completed_id).await, vec![(lamp as i64, 2, 19.99), (chair as i64, 1, 45.0)]);

    // Redis: the open basket as the old JSON, the purchased one gone.
    let eve = estate.redis_get("basket:eve").await.expect("eve's basket key");
    common::assert_key_order(&eve, &["id", "user_id", "items", "total", "created_at", "updated_at", "expires_at"]);
    let eve: Value = serde_json::from_str(&eve).unwrap();
    assert_eq!((eve["total"].clone(), eve["items"][0]["quantity"].clone()), (json!(59.97), json!(3)));
    assert!(estate.redis_ttl_ms("basket:eve").await > 0, "TTL to the basket's expiry");
    let ann: Value = serde_json::from_str(&estate.redis_get("basket:ann").await.expect("ann's basket key")).unwrap();
    assert_eq!(
        (ann["items"].clone(), ann["total"].clone()),
        (json!([]), json!(0)),
        "a purchased basket is emptied, as the engine empties it"
    );

    // Kafka: the old events once each, committed only; within a topic (one partition per key) in order.
    for isolation in ["read_committed", "read_uncommitted"] {
        let events = estate.kafka_events(isolation, &[&completed_id, &refunded_id, &failed_id, &cancelled_id, &declined_id]).await;
        let of = |id: &str, topic: &str| {
            events.iter().filter(|e| e.related(id) && e.topic == topic).map(|e| e.event_type.clone()).collect::<Vec<_>>()
        };
        assert_eq!(of(&completed_id, "payment-events"), ["payment.completed"], "{isolation}");
        assert_eq!(of(&completed_id, "stock-events"), ["stock.updated", "stock.updated"], "one per item ({isolation})");
        assert_eq!(of(&completed_id, "basket-events"), ["basket.cleared"], "{isolation}");
        assert_eq!(of(&refunded_id, "payment-events"), ["payment.completed", "payment.refunded"], "{isolation}");
        assert_eq!(of(&failed_id, "payment-events"), ["payment.failed"], "{isolation}");
        assert_eq!(of(&declined_id, "payment-events"), ["payment.failed"], "{isolation}");
        let decline = events.iter().find(|e| e.related(&declined_id) && e.event_type == "payment.failed").unwrap();
        assert_eq!(
            (decline.body["error_code"].as_str(), decline.body["reason"].as_str()),
            (Some("card_declined"), Some("Your card was declined.")),
            "the provider's decline in the event ({isolation})"
        );
        assert!(events.iter().all(|e| !e.related(&cancelled_id)), "a cancelled payment has no event ({isolation})");
        let completion = events.iter().find(|e| e.related(&completed_id) && e.event_type == "payment.completed").unwrap();
        assert_eq!(completion.key, completed_id, "keyed by payment id");
        assert_eq!(completion.body["amount"], json!(84.98));
    }
    let status = s.get("/admin/adapters").await.1;
    for a in status["adapters"].as_array().unwrap() {
        for shard in a["shards"].as_array().unwrap() {
            assert_eq!((shard["state"].as_str(), shard["dead_letters_total"].as_u64()), (Some("following"), Some(0)), "{a}");
        }
    }
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kassa_adapter_lag_lsn{adapter=\"kafka\",shard=\"0\"}"), "lag in /metrics");
    drop(s);
    estate.drop_all().await;
}
