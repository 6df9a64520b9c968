//! A whole shopping flow over HTTP on an empty catalog, and Idempotency-Key semantics.

mod common;

use common::Server;
use serde_json::{Value, json};

async fn product(s: &Server, id: &Value) -> Value {
    let (status, p) = s.get(&format!("/products/{id}")).await;
    assert_eq!(status, 200);
    p
}

fn counters(p: &Value) -> (i64, i64, i64) {
    (p["stock"].as_i64().unwrap(), p["reserved"].as_i64().unwrap(), p["sold"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopping_flow() {
    let s = Server::start_with(&["--seed-catalog", "false"]);
    let (status, stats) = s.get("/products/stats").await;
    assert_eq!(status, 200, "stats on an empty catalog are zeros, not a 500");
    assert_eq!(
        stats,
        json!({"total_products": 0, "total_categories": 0, "average_price": 0, "total_value": 0, "low_stock_products": 0, "out_of_stock_products": 0})
    );

    let (_, lamp) = s.send("POST", "/api/products", Some(json!({"name": "Lamp", "price": 19.99, "stock": 10, "category": "Home"}))).await;
    let (_, chair) = s.send("POST", "/api/products", Some(json!({"name": "Chair", "price": 49.5, "stock": 4, "category": "Home"}))).await;
    let (lamp_id, chair_id) = (lamp["id"].clone(), chair["id"].clone());

    for (id, quantity) in [(&lamp_id, 3), (&chair_id, 2), (&lamp_id, 1)] {
        let (status, body) = s.send("POST", "/api/baskets/dana/items", Some(json!({"product_id": id, "quantity": quantity}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, basket) = s.get("/api/baskets/dana").await;
    assert_eq!((basket["total"].clone(), basket["item_count"].clone()), (json!(178.96), json!(6)), "4 x 19.99 + 2 x 49.5, exact");

    let (status, payment) =
        s.send("POST", "/api/payments", Some(json!({"user_id": "dana", "method": "debit_card", "provider": "adyen"}))).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["amount"], json!(178.96));
    assert_eq!(counters(&product(&s, &lamp_id).await), (6, 4, 0), "reserved while pending");
    let id = payment["id"].as_str().unwrap();
    let (status, done) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")), "{done}");
    assert_eq!(counters(&product(&s, &lamp_id).await), (6, 0, 4), "available and sold after the sale");
    assert_eq!(counters(&product(&s, &chair_id).await), (2, 0, 2));
    let (_, basket) = s.get("/api/baskets/dana").await;
    assert_eq!((basket["items"].clone(), basket["total"].clone()), (json!([]), json!(0)), "basket cleared");
    let (_, notes) = s.get("/api/notifications?user_id=dana").await;
    let titles: Vec<&str> = notes["notifications"].as_array().unwrap().iter().filter_map(|n| n["title"].as_str()).collect();
    assert!(titles.contains(&"Payment Successful"), "a payment notification was created: {titles:?}");

    // A cancelled checkout gives its reservation back.
    s.send("POST", "/api/baskets/dana/items", Some(json!({"product_id": chair_id, "quantity": 2}))).await;
    let (_, second) = s.send("POST", "/api/payments", Some(json!({"user_id": "dana", "method": "debit_card", "provider": "adyen"}))).await;
    assert_eq!(counters(&product(&s, &chair_id).await), (0, 2, 2));
    let (status, body) =
        s.send("POST", "/api/payments", Some(json!({"user_id": "dana", "method": "debit_card", "provider": "adyen"}))).await;
    assert_eq!(status, 409, "the basket's units are already reserved: {body}");
    assert!(body["message"].as_str().unwrap().contains("insufficient stock"), "{body}");
    let (status, _) = s.send("POST", &format!("/api/payments/{}/cancel", second["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    // The cancel is answered only once the product's shard has released the units.
    assert_eq!(counters(&product(&s, &chair_id).await), (2, 0, 2), "released before the cancel was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys() {
    let s = Server::start();
    let body = br#"{"name":"Once","price":5,"stock":1}"#.to_vec();
    let json_ct = ("content-type", "application/json");
    let (status1, first) = s.raw("POST", "/products", body.clone(), &[json_ct, ("Idempotency-Key", "create-once")]).await;
    let (status2, second) = s.raw("POST", "/products", body.clone(), &[json_ct, ("Idempotency-Key", "create-once")]).await;
    assert_eq!((status1, status2), (201, 201));
    assert_eq!(first, second, "the retry gets the first answer");
    let (status3, third) = s.raw("POST", "/api/products", body.clone(), &[json_ct, ("Idempotency-Key", "create-once")]).await;
    assert_eq!((status3, &third), (201, &first), "the gateway path is the same request");
    let (_, list) = s.get("/products").await;
    assert_eq!(list["count"], 11, "one effect");
    let (status, text) =
        s.raw("POST", "/products", br#"{"name":"Other","price":5}"#.to_vec(), &[json_ct, ("Idempotency-Key", "create-once")]).await;
    assert_eq!(status, 409, "same key, different body: {text}");
    for bad in ["has space", &"k".repeat(129), "tab\tkey"] {
        let (status, text) = s.raw("POST", "/products", body.clone(), &[json_ct, ("Idempotency-Key", bad)]).await;
        assert_eq!(status, 400, "{bad:?}: {text}");
    }
    let (_, list) = s.get("/products").await;
    assert_eq!(list["count"], 11, "refused keys changed nothing");

    let add = br#"{"product_id":6,"quantity":2}"#.to_vec();
    for _ in 0..2 {
        let (status, _) = s.raw("POST", "/baskets/eve/items", add.clone(), &[json_ct, ("Idempotency-Key", "add-1")]).await;
        assert_eq!(status, 200);
    }
    let (_, basket) = s.get("/baskets/eve").await;
    assert_eq!(basket["item_count"], 2, "added once");
    // Keys are per route and body: the same key on another route is another request.
    let (status, _) =
        s.raw("POST", "/baskets/eve/items", br#"{"product_id":7,"quantity":1}"#.to_vec(), &[json_ct, ("Idempotency-Key", "add-1")]).await;
    assert_eq!(status, 409);

    let (_, payment) = s.send("POST", "/payments", Some(json!({"user_id": "eve", "method": "paypal", "provider": "paypal"}))).await;
    let path = format!("/payments/{}/process", payment["id"].as_str().unwrap());
    let (a, first) = s.raw("POST", &path, Vec::new(), &[("Idempotency-Key", "pay-1")]).await;
    let (b, second) = s.raw("POST", &path, Vec::new(), &[("Idempotency-Key", "pay-1")]).await;
    assert_eq!((a, b), (200, 200), "a retried process is answered, not refused: {second}");
    assert_eq!(first, second);
    let (c, _) = s.raw("POST", &path, Vec::new(), &[]).await;
    assert_eq!(c, 409, "without a key a second process is a conflict");
}
