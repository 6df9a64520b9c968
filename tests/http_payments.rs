//! Payment endpoints over real HTTP against the real binary (contract §4.5), and the checkout flow:
//! reservation at creation, sale and basket clearing on process, release on cancel.

mod common;

use common::{Server, assert_key_order};
use serde_json::{Value, json};

const PAYMENT_KEYS: &[&str] = &[
    "id",
    "user_id",
    "basket_id",
    "amount",
    "currency",
    "status",
    "method",
    "provider",
    "provider_id",
    "description",
    "metadata",
    "items",
    "created_at",
    "updated_at",
    "processed_at",
    "expires_at",
    "refunded_amount",
    "refund_reason",
    "refund_id",
    "failure_reason",
    "error_code",
    "payment_method_id",
];

async fn fill(s: &Server, user: &str, lines: &[(u64, i64)]) {
    for (product_id, quantity) in lines {
        let (status, body) =
            s.send("POST", &format!("/baskets/{user}/items"), Some(json!({"product_id": product_id, "quantity": quantity}))).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn stock(s: &Server, id: u64) -> (i64, i64, i64) {
    let (_, p) = s.get(&format!("/products/{id}")).await;
    (p["stock"].as_i64().unwrap(), p["reserved"].as_i64().unwrap(), p["sold"].as_i64().unwrap())
}

fn checkout(user: &str) -> Value {
    json!({"user_id": user, "basket_id": "ignored", "method": "credit_card", "provider": "stripe", "currency": "USD", "description": "order", "metadata": {"order": "42"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_endpoints_and_checkout() {
    let s = Server::start();
    let (status, body) = s.send("POST", "/payments", Some(checkout("nobody"))).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
    s.send("POST", "/baskets", Some(json!({"user_id": "empty"}))).await;
    let (status, body) = s.send("POST", "/payments", Some(checkout("empty"))).await;
    assert_eq!((status, body), (400, json!({"error": "Bad Request", "message": "basket is empty or invalid"})));
    for bad in [
        json!({"method": "credit_card", "provider": "stripe"}),
        json!({"user_id": "bob", "provider": "stripe"}),
        json!({"user_id": "bob", "method": "credit_card"}),
        json!({"user_id": "bob", "method": "cash", "provider": "stripe"}),
        json!({"user_id": "bob", "method": "credit_card", "provider": "stripe", "metadata": {"n": 1}}),
    ] {
        let (status, body) = s.send("POST", "/payments", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Create: reserves stock.
    fill(&s, "bob", &[(2, 1), (6, 2)]).await;
    let (status, p, text) = s.call("POST", "/api/payments", Some(checkout("bob"))).await;
    assert_eq!(status, 201, "{p}");
    assert_key_order(&text, PAYMENT_KEYS);
    assert_eq!((p["status"].as_str(), p["amount"].clone(), p["currency"].as_str()), (Some("pending"), json!(1025.97), Some("USD")));
    assert_eq!(p["metadata"], json!({"order": "42"}));
    assert_eq!(p["processed_at"], Value::Null);
    assert_eq!(p["items"].as_array().unwrap().len(), 2);
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(stock(&s, 2).await, (24, 1, 0), "reserved at creation");

    let (status, got) = s.get(&format!("/payments/{id}")).await;
    assert_eq!((status, &got["id"]), (200, &p["id"]));
    let (status, body) = s.get("/payments/nope").await;
    assert_eq!((status, body), (404, json!({"error": "Not Found", "message": "failed to get payment: payment not found: nope"})));
    let (status, items, text) = s.call("GET", &format!("/payments/{id}/items"), None).await;
    assert_eq!(status, 200);
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_key_order(
        &text[1..text.find('}').unwrap() + 1],
        &["id", "product_id", "name", "quantity", "price", "subtotal", "category", "created_at"],
    );
    let (status, _) = s.get("/payments/nope/items").await;
    assert_eq!(status, 404);

    // Process: sells, clears the basket, notifies.
    let (status, done) = s.send("POST", &format!("/payments/{id}/process"), Some(json!({"provider_id": "pi_1"}))).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!((done["status"].as_str(), done["provider_id"].as_str()), (Some("completed"), Some("pi_1")));
    assert!(done["processed_at"].is_string());
    assert_eq!(stock(&s, 2).await, (24, 0, 1), "sold");
    assert_eq!(stock(&s, 6).await, (98, 0, 2));
    let (_, basket) = s.get("/baskets/bob").await;
    assert_eq!(basket["items"], json!([]), "basket cleared");
    let (_, notes) = s.get("/api/v1/notifications?user_id=bob").await;
    assert!(notes["total"].as_u64().unwrap() >= 1, "a notification was created: {notes}");
    let (status, body) = s.send("POST", &format!("/payments/{id}/process"), None).await;
    assert_eq!((status, body["message"].as_str()), (409, Some("payment cannot be processed, current status: completed")));
    let (status, _) = s.send("POST", &format!("/payments/{id}/cancel"), None).await;
    assert_eq!(status, 409);
    let (status, _) = s.send("POST", &format!("/payments/{id}/retry"), None).await;
    assert_eq!(status, 409);
    let (status, body) = s.send("POST", &format!("/payments/{id}/process"), Some(json!({"payment_id": "other"}))).await;
    assert_eq!(status, 400, "{body}");

    // Refund.
    for bad in [json!({"amount": 10.005}), json!({"amount": -1}), json!({"amount": "5"})] {
        let (status, body) = s.send("POST", &format!("/payments/{id}/refund"), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = s.send("POST", &format!("/payments/{id}/refund"), Some(json!({"amount": 5000}))).await;
    assert_eq!(status, 400, "more than the payment: {body}");
    let (status, refunded) = s.send("POST", &format!("/payments/{id}/refund"), Some(json!({"reason": "damaged"}))).await;
    assert_eq!(status, 200, "{refunded}");
    assert_eq!(
        (refunded["status"].as_str(), refunded["refunded_amount"].clone(), refunded["refund_reason"].as_str()),
        (Some("refunded"), json!(1025.97), Some("damaged"))
    );
    let (status, _) = s.send("POST", "/payments/nope/refund", None).await;
    assert_eq!(status, 404);

    // Cancel releases the reservation.
    fill(&s, "bob", &[(8, 5)]).await;
    let (status, p2) = s.send("POST", "/payments", Some(checkout("bob"))).await;
    assert_eq!(status, 201, "{p2}");
    let id2 = p2["id"].as_str().unwrap().to_string();
    assert_eq!(stock(&s, 8).await, (0, 5, 0));
    let (status, body) = s.send("POST", "/baskets/carl/items", Some(json!({"product_id": 8, "quantity": 1}))).await;
    assert_eq!(status, 409, "reserved units cannot be bought: {body}");
    let (status, cancelled) = s.send("POST", &format!("/payments/{id2}/cancel"), None).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")));
    // The cancel is answered only once the product's shard has released the units.
    assert_eq!(stock(&s, 8).await, (5, 0, 0), "released before the cancel was answered");
    let (status, _) = s.send("POST", &format!("/payments/{id2}/cancel"), None).await;
    assert_eq!(status, 409);

    // Administrative update and retry.
    fill(&s, "bob", &[(10, 1)]).await;
    let (_, p3) = s.send("POST", "/payments", Some(checkout("bob"))).await;
    let id3 = p3["id"].as_str().unwrap().to_string();
    for (body, message) in
        [(json!({"status": "bogus"}), "invalid payment status: bogus"), (json!({"status": "pending"}), "invalid payment status: pending")]
    {
        let (status, got) = s.send("PUT", &format!("/payments/{id3}"), Some(body)).await;
        assert_eq!((status, got["message"].as_str()), (400, Some(message)));
    }
    let (status, _) = s.send("PUT", &format!("/payments/{id3}"), Some(json!({}))).await;
    assert_eq!(status, 400);
    let (status, _) = s.send("PUT", "/payments/nope", Some(json!({"status": "failed"}))).await;
    assert_eq!(status, 404);
    let (status, failed) = s.send("PUT", &format!("/payments/{id3}"), Some(json!({"status": "failed", "metadata": {"why": "test"}}))).await;
    assert_eq!((status, failed["status"].as_str()), (200, Some("failed")), "{failed}");
    // The failure was answered only once its units were released, so the retry can reserve them again.
    let (status, retried) = s.send("POST", &format!("/payments/{id3}/retry"), None).await;
    assert_eq!(status, 200, "{retried}");
    assert!(["completed", "pending"].contains(&retried["status"].as_str().unwrap()), "{retried}");

    // Listings and reports.
    let (status, list) = s.get("/payments/user/bob").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert!(list.windows(2).all(|w| w[0]["created_at"].as_str() >= w[1]["created_at"].as_str()), "newest first");
    let (_, one) = s.get("/payments/user/bob?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let (status, none) = s.get("/payments/user/nobody").await;
    assert_eq!((status, none), (200, json!([])));
    let (_, stats, text) = s.call("GET", "/payments/stats/bob", None).await;
    assert_key_order(
        &text,
        &["total_payments", "total_amount", "completed_payments", "failed_payments", "pending_payments", "average_amount"],
    );
    assert_eq!(stats["total_payments"], 3);
    let (status, by_status) = s.get("/payments/status/cancelled").await;
    assert_eq!((status, by_status.as_array().unwrap().len()), (200, 1));
    let (status, _) = s.get("/payments/status/bogus").await;
    assert_eq!(status, 400);
    let (_, by_method) = s.get("/payments/method/credit_card").await;
    assert_eq!(by_method.as_array().unwrap().len(), 3);
    let (_, by_provider) = s.get("/payments/provider/paypal").await;
    assert_eq!(by_provider, json!([]));
    let (_, by_amount) = s.get("/payments/amount/1000/1100").await;
    assert_eq!(by_amount.as_array().unwrap().len(), 1);
    let (status, body) = s.get("/payments/amount/x/1").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid min amount", "message": "Min amount must be a valid number"})));
    let (status, body) = s.get("/payments/amount/1/x").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid max amount", "message": "Max amount must be a valid number"})));
    let (_, by_date) = s.get("/payments/date/2000-01-01/2100-01-01").await;
    assert_eq!(by_date.as_array().unwrap().len(), 3);
    let (status, _) = s.get("/payments/date/x/2100-01-01").await;
    assert_eq!(status, 400);
    let (_, all) = s.get("/api/payments?limit=2").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (status, analytics, text) = s.call("GET", "/payments/analytics", None).await;
    assert_eq!(status, 200);
    assert_key_order(
        &text,
        &[
            "total_payments",
            "total_revenue",
            "success_rate",
            "average_amount",
            "top_payment_method",
            "top_provider",
            "daily_transactions",
            "monthly_revenue",
        ],
    );
    assert_eq!(
        (analytics["total_payments"].clone(), analytics["top_payment_method"].clone(), analytics["daily_transactions"].clone()),
        (json!(3), json!("credit_card"), json!(3))
    );
    let (_, methods) = s.get("/payments/methods").await;
    assert_eq!(methods, json!({"methods": ["credit_card"], "count": 1}));
    let (_, providers) = s.get("/payments/providers").await;
    assert_eq!(providers, json!({"providers": ["stripe"], "count": 1}));
    let (_, summary, text) = s.call("GET", "/payments/summary", None).await;
    assert_key_order(
        &text,
        &[
            "total_payments",
            "total_revenue",
            "pending_payments",
            "completed_payments",
            "failed_payments",
            "refunded_payments",
            "success_rate",
            "average_amount",
        ],
    );
    assert_eq!(summary["refunded_payments"], 1);
    let (status, _) = s.get("/payments/stats").await;
    assert_eq!(status, 404, "a bare /payments/stats is a payment id, as in the old service");
}
