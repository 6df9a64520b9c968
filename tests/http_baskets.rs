//! Basket endpoints over real HTTP against the real binary (contract §3.2).

mod common;

use common::{Server, assert_key_order};
use serde_json::json;

const BASKET_KEYS: &[&str] = &["id", "user_id", "items", "total", "item_count", "created_at", "updated_at", "expires_at"];
const ITEM_KEYS: &[&str] = &["product_id", "name", "price", "quantity", "subtotal", "category"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basket_endpoints() {
    let s = Server::start();
    let (status, body) = s.get("/baskets/alice").await;
    assert_eq!((status, body), (404, json!({"error": "Not Found", "message": "failed to get basket: basket not found for user alice"})));

    let (status, basket, text) = s.call("POST", "/baskets", Some(json!({"user_id": "alice"}))).await;
    assert_eq!(status, 201);
    assert_key_order(&text, BASKET_KEYS);
    assert_eq!((basket["items"].clone(), basket["total"].clone(), basket["item_count"].clone()), (json!([]), json!(0), json!(0)));
    assert!(basket["id"].as_str().unwrap().starts_with("basket_alice_"));
    let (status, again) = s.send("POST", "/api/baskets", Some(json!({"user_id": "alice"}))).await;
    assert_eq!((status, again["id"].clone()), (201, basket["id"].clone()), "an existing basket is returned unchanged");
    for bad in [json!({}), json!({"user_id": ""}), json!({"user_id": 5}), json!([])] {
        let (status, body) = s.send("POST", "/baskets", Some(bad.clone())).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("Invalid request body")), "{bad}");
    }

    let (status, b, text) = s.call("POST", "/baskets/alice/items", Some(json!({"product_id": 6, "quantity": 2}))).await;
    assert_eq!(status, 200, "{b}");
    assert_key_order(&text, BASKET_KEYS);
    assert_eq!(
        b["items"][0],
        json!({"product_id": 6, "name": "The Great Gatsby", "price": 12.99, "quantity": 2, "subtotal": 25.98, "category": "Books"})
    );
    // The k6 script's body: extra fields are ignored, user_id matches the path.
    let k6 = json!({"user_id": "alice", "product_id": 7, "quantity": 1, "name": "Test Product", "price": 29.99, "category": "Electronics"});
    let (status, b) = s.send("POST", "/api/baskets/alice/items", Some(k6)).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!((b["total"].clone(), b["item_count"].clone()), (json!(40.97), json!(3)));

    let (status, body) = s.send("POST", "/baskets/alice/items", Some(json!({"user_id": "mallory", "product_id": 7, "quantity": 1}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.send("POST", "/baskets/alice/items", Some(json!({"product_id": 999, "quantity": 1}))).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
    for bad in [
        json!({"product_id": 6, "quantity": 0}),
        json!({"product_id": 6, "quantity": -1}),
        json!({"product_id": 6, "quantity": 1_000_000}),
        json!({"product_id": -6, "quantity": 1}),
        json!({"quantity": 1}),
        json!({"product_id": 6}),
    ] {
        let (status, body) = s.send("POST", "/baskets/alice/items", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Product 8 has 5 units: the whole basket quantity is checked.
    let (status, _) = s.send("POST", "/baskets/alice/items", Some(json!({"product_id": 8, "quantity": 4}))).await;
    assert_eq!(status, 200);
    let (status, body) = s.send("POST", "/baskets/alice/items", Some(json!({"product_id": 8, "quantity": 2}))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Conflict")));
    assert!(body["message"].as_str().unwrap().contains("insufficient stock"), "{body}");
    let (status, _) = s.send("DELETE", "/baskets/alice/items/8", None).await;
    assert_eq!(status, 200);

    let (status, items, text) = s.call("GET", "/baskets/alice/items", None).await;
    assert_eq!(status, 200);
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_key_order(&text[1..text.find('}').unwrap() + 1], ITEM_KEYS);
    let (_, total, text) = s.call("GET", "/baskets/alice/total", None).await;
    assert_key_order(&text, &["user_id", "total", "item_count", "currency"]);
    assert_eq!(total, json!({"user_id": "alice", "total": 40.97, "item_count": 3, "currency": "USD"}));
    let (_, count) = s.get("/baskets/alice/count").await;
    assert_eq!(count, json!({"user_id": "alice", "item_count": 3, "unique_items": 2}));
    let (_, books) = s.get("/baskets/alice/category/Books").await;
    assert_eq!(books.as_array().unwrap().len(), 2);
    let (status, none) = s.get("/baskets/alice/category/Sports").await;
    assert_eq!((status, none), (200, json!([])));
    let (_, stats, text) = s.call("GET", "/baskets/alice/stats", None).await;
    assert_key_order(
        &text,
        &[
            "user_id",
            "total_items",
            "unique_items",
            "total_value",
            "average_item_price",
            "categories",
            "most_expensive_item",
            "least_expensive_item",
        ],
    );
    assert_eq!(
        stats,
        json!({"user_id": "alice", "total_items": 3, "unique_items": 2, "total_value": 40.97, "average_item_price": 20.49, "categories": 1, "most_expensive_item": 14.99, "least_expensive_item": 12.99})
    );
    let (_, expiry, text) = s.call("GET", "/baskets/alice/expiry", None).await;
    assert_key_order(&text, &["user_id", "expires_at", "is_expired", "time_left"]);
    assert_eq!(expiry["is_expired"], false);
    let left = expiry["time_left"].as_str().unwrap();
    assert!(left.starts_with("23h") && left.ends_with('s') && left.contains('m'), "Go duration: {left}");
    let (_, history) = s.get("/baskets/alice/history").await;
    assert_eq!((history["history"].as_array().unwrap().len(), history["total_operations"].clone()), (2, json!(2)));
    let (status, rec, text) = s.call("GET", "/baskets/alice/recommendations", None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["user_id", "recommendations", "reason"]);
    let recs = rec["recommendations"].as_array().unwrap();
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|r| r["product_id"] != 6 && r["product_id"] != 7 && r["quantity"] == 1), "{rec}");

    let (status, b) = s.send("PUT", "/baskets/alice/items/6", Some(json!({"quantity": 5}))).await;
    assert_eq!((status, b["items"][0]["quantity"].clone()), (200, json!(5)));
    let (status, _) = s.send("PUT", "/baskets/alice/items/6", Some(json!({"product_id": 7, "quantity": 5}))).await;
    assert_eq!(status, 400, "body product id must match the path");
    let (status, _) = s.send("PUT", "/baskets/alice/items/6", Some(json!({"quantity": -2}))).await;
    assert_eq!(status, 400);
    let (status, _) = s.send("PUT", "/baskets/alice/items/6", Some(json!({"quantity": 101}))).await;
    assert_eq!(status, 409, "more than the stock");
    let (status, _) = s.send("PUT", "/baskets/alice/items/3", Some(json!({"quantity": 1}))).await;
    assert_eq!(status, 404, "not in the basket");
    let (status, b) = s.send("PUT", "/baskets/alice/items/6", Some(json!({"quantity": 0}))).await;
    assert_eq!((status, b["items"].as_array().unwrap().len()), (200, 1), "quantity 0 removes the line");
    let (status, b) = s.send("DELETE", "/baskets/alice/items/7", None).await;
    assert_eq!((status, b["items"].clone()), (200, json!([])), "remove-item removes");
    let (status, _) = s.send("DELETE", "/baskets/alice/items/7", None).await;
    assert_eq!(status, 404);
    let (status, _) = s.send("DELETE", "/baskets/alice/items/x", None).await;
    assert_eq!(status, 400);

    s.send("POST", "/baskets/alice/items", Some(json!({"product_id": 1, "quantity": 1}))).await;
    let (status, b) = s.send("DELETE", "/baskets/alice/items", None).await;
    assert_eq!((status, b["items"].clone(), b["total"].clone()), (200, json!([]), json!(0)));
    let (status, body) = s.send("DELETE", "/api/baskets/alice", None).await;
    assert_eq!((status, body), (200, json!({"message": "Basket deleted successfully"})));
    let (status, _) = s.get("/baskets/alice").await;
    assert_eq!(status, 404);
    let (status, body) = s.send("DELETE", "/baskets/nobody", None).await;
    assert_eq!((status, body), (200, json!({"message": "Basket deleted successfully"})), "deleting nothing is fine");
    for path in [
        "/baskets/nobody/items",
        "/baskets/nobody/total",
        "/baskets/nobody/count",
        "/baskets/nobody/stats",
        "/baskets/nobody/expiry",
        "/baskets/nobody/history",
        "/baskets/nobody/category/x",
    ] {
        let (status, _) = s.get(path).await;
        assert_eq!(status, 404, "{path}");
    }
    // Prices are bounded so that no basket total can overflow: an absurd price is a clean 400.
    let (status, body) =
        s.send("POST", "/products", Some(json!({"name": "Yacht", "price": 10_000_000_000_000u64, "stock": 1_000_000}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("price above"), "{body}");
    // The most expensive product allowed, in the largest quantity, in a basket: fine.
    let (status, big) = s.send("POST", "/products", Some(json!({"name": "Yacht", "price": 1_000_000_000u64, "stock": 1_000_000}))).await;
    assert_eq!(status, 201, "{big}");
    let (status, body) = s.send("POST", "/baskets/rich/items", Some(json!({"product_id": big["id"], "quantity": 10_000}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], json!(10_000_000_000_000u64));
    let (status, body) = s.get("/baskets/rich/stats").await;
    assert_eq!((status, body["total_value"].clone()), (200, json!(10_000_000_000_000u64)));
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);

    let long = "u".repeat(200);
    let (status, _) = s.get(&format!("/baskets/{long}")).await;
    assert_eq!(status, 400, "user ids are bounded");
}
