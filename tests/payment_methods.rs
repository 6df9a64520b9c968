//! Stored payment methods over real HTTP against the real binary: add, list (the default first, never
//! a token), make default atomically, delete, refusals that change nothing, checkouts that name a
//! stored method and are charged with its token, and methods that survive kill -9.

mod common;

use common::Server;
use serde_json::{Value, json};

fn method(user: &str, token: &str, is_default: bool) -> Value {
    json!({"user_id": user, "type": "credit_card", "provider": "simulated", "token": token, "last_four_digits": "4242",
        "expiry_month": 12, "expiry_year": 2099, "is_default": is_default})
}

async fn add(s: &Server, path: &str, body: Value) -> Value {
    let (status, m, text) = s.call("POST", path, Some(body)).await;
    assert_eq!(status, 201, "{m}");
    assert!(!text.contains("token") && !text.contains("tok_"), "a token is never answered: {text}");
    m
}

/// (id, is_default) of the user's methods, in the order listed.
async fn listed(s: &Server, user: &str) -> Vec<(String, bool)> {
    let (status, body) = s.get(&format!("/api/payment-methods?user_id={user}")).await;
    assert_eq!(status, 200, "{body}");
    let methods = body["payment_methods"].as_array().unwrap();
    assert_eq!(body["total"].as_u64(), Some(methods.len() as u64), "{body}");
    methods.iter().map(|m| (m["id"].as_str().unwrap().to_string(), m["is_default"].as_bool().unwrap())).collect()
}

async fn stock(s: &Server, id: u64) -> (i64, i64, i64) {
    let (_, p) = s.get(&format!("/products/{id}")).await;
    (p["stock"].as_i64().unwrap(), p["reserved"].as_i64().unwrap(), p["sold"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_methods_keep_one_default_and_checkouts_are_charged_with_their_tokens() {
    let s = Server::start();
    let visa = add(&s, "/api/payment-methods", method("ola", "tok_visa", false)).await;
    assert_eq!(
        (visa["type"].as_str(), visa["provider"].as_str(), visa["last_four_digits"].as_str(), visa["expiry_month"].as_u64()),
        (Some("credit_card"), Some("simulated"), Some("4242"), Some(12))
    );
    assert_eq!((visa["is_default"].as_bool(), visa["is_active"].as_bool()), (Some(true), Some(true)), "the first is the default");
    let declined = add(&s, "/payment-methods", method("ola", "tok_chargeDeclined", true)).await;
    let (visa_id, declined_id) = (visa["id"].as_str().unwrap().to_string(), declined["id"].as_str().unwrap().to_string());
    assert_eq!(listed(&s, "ola").await, vec![(declined_id.clone(), true), (visa_id.clone(), false)], "the default first");

    // Making one the default unmakes the other in the same change.
    let (status, body) = s.send("PUT", &format!("/api/payment-methods/{visa_id}/default?user_id=ola"), None).await;
    assert_eq!((status, body["is_default"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(listed(&s, "ola").await, vec![(visa_id.clone(), true), (declined_id.clone(), false)]);

    // Refusals change nothing: a card number, an expired card, the same token twice, someone else's method.
    let before = listed(&s, "ola").await;
    for (body, want) in [
        (method("ola", "4242424242424242", false), "never a card number"),
        (
            json!({"user_id": "ola", "type": "credit_card", "provider": "simulated", "token": "tok_amex", "expiry_month": 1, "expiry_year": 2020}),
            "expired",
        ),
        (json!({"user_id": "ola", "type": "cash", "provider": "simulated", "token": "tok_amex"}), "type must be one of"),
        (json!({"user_id": "ola", "type": "credit_card", "provider": "simulated"}), "token is required"),
    ] {
        let (status, answer) = s.send("POST", "/api/payment-methods", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(want), "{want}: {answer}");
    }
    let (status, _) = s.send("POST", "/api/payment-methods", Some(method("ola", "tok_visa", false))).await;
    assert_eq!(status, 409, "the same token twice");
    let (status, _) = s.send("PUT", &format!("/api/payment-methods/{visa_id}/default?user_id=eve"), None).await;
    assert_eq!(status, 404, "only the owner's methods are found");
    assert_eq!(listed(&s, "ola").await, before);

    // A checkout naming the declined method is charged with its token: declined, stock given back.
    let before_stock = stock(&s, 4).await;
    assert_eq!(s.send("POST", "/baskets/ola/items", Some(json!({"product_id": 4, "quantity": 1}))).await.0, 200);
    let (status, p) = s.send("POST", "/api/payments", Some(json!({"user_id": "ola", "payment_method_id": declined_id}))).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        (p["provider"].as_str(), p["method"].as_str(), p["payment_method_id"].as_str()),
        (Some("simulated"), Some("credit_card"), Some(declined_id.as_str())),
        "type and provider come from the stored method: {p}"
    );
    let id = p["id"].as_str().unwrap();
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!(status, 402, "{body}");
    let (_, failed) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!((failed["status"].as_str(), failed["error_code"].as_str()), (Some("failed"), Some("card_declined")), "{failed}");
    assert_eq!(stock(&s, 4).await, before_stock, "released by the decline");

    // The good card: sold. Another user's method, or a token with a method, is refused.
    let (status, body) =
        s.send("POST", "/api/payments", Some(json!({"user_id": "eve", "payment_method_id": visa_id, "method": "credit_card"}))).await;
    assert_eq!(status, 404, "another user's method is not found: {body}");
    assert!(body["message"].as_str().unwrap().contains("payment method not found"), "{body}");
    let (status, body) =
        s.send("POST", "/api/payments", Some(json!({"user_id": "ola", "payment_method_id": visa_id, "token": "tok_visa"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, p) = s.send("POST", "/api/payments", Some(json!({"user_id": "ola", "payment_method_id": visa_id}))).await;
    assert_eq!(status, 201, "{p}");
    let (status, done) = s.send("POST", &format!("/api/payments/{}/process", p["id"].as_str().unwrap()), None).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")), "{done}");
    assert!(done["provider_id"].as_str().unwrap().starts_with("pi_sim_"), "{done}");

    // Deleting the default makes the one left the default; a second delete finds nothing.
    let (status, text) = s.raw("DELETE", &format!("/api/payment-methods/{visa_id}?user_id=ola"), Vec::new(), &[]).await;
    assert_eq!((status, text.as_str()), (204, ""));
    assert_eq!(listed(&s, "ola").await, vec![(declined_id.clone(), true)]);
    let (status, _) = s.raw("DELETE", &format!("/payment-methods/{visa_id}?user_id=ola"), Vec::new(), &[]).await;
    assert_eq!(status, 404);
    let (status, body) = s.send("POST", "/api/payments", Some(json!({"user_id": "ola", "payment_method_id": visa_id}))).await;
    assert_eq!(status, 404, "a deleted method cannot be charged: {body}");

    // Acknowledged changes survive kill -9.
    let dir = s.kill_keep_data();
    let s = Server::start_in(dir, &[]);
    assert_eq!(listed(&s, "ola").await, vec![(declined_id, true)]);
}
