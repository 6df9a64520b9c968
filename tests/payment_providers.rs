//! Payments charged through a provider, over real HTTP against the real binary: the simulated provider
//! (on by default) with Stripe's test tokens, declines that release the stock, a provider that does not
//! answer in time, a charge re-driven after kill -9, refunds as records, and the provider figures.

mod common;

use common::Server;
use serde_json::{Value, json};

fn checkout(user: &str, token: &str) -> Value {
    json!({"user_id": user, "method": "credit_card", "provider": "simulated", "token": token})
}

async fn stock(s: &Server, id: u64) -> (i64, i64, i64) {
    let (_, p) = s.get(&format!("/products/{id}")).await;
    (p["stock"].as_i64().unwrap(), p["reserved"].as_i64().unwrap(), p["sold"].as_i64().unwrap())
}

/// A pending payment of `quantity` units of product `product` for `user`, paid with `token`.
async fn pending(s: &Server, user: &str, product: u64, quantity: i64, token: &str) -> String {
    let (status, body) =
        s.send("POST", &format!("/baskets/{user}/items"), Some(json!({"product_id": product, "quantity": quantity}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, p) = s.send("POST", "/api/payments", Some(checkout(user, token))).await;
    assert_eq!((status, p["status"].as_str()), (201, Some("pending")), "{p}");
    p["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_provider_charges_visa_and_declines_with_the_code_releasing_the_stock() {
    let s = Server::start();
    // A provider Kassa charges through needs a token, and never takes a card number.
    s.send("POST", "/baskets/vic/items", Some(json!({"product_id": 3, "quantity": 2}))).await;
    let (status, body) =
        s.send("POST", "/api/payments", Some(json!({"user_id": "vic", "method": "credit_card", "provider": "simulated"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("token is required"), "{body}");
    let (status, body) = s.send("POST", "/api/payments", Some(checkout("vic", "4242424242424242"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("never a card number"), "{body}");
    s.send("DELETE", "/baskets/vic", None).await;

    let before = stock(&s, 3).await;
    let id = pending(&s, "vic", 3, 2, "tok_chargeDeclined").await;
    assert_eq!(stock(&s, 3).await, (before.0 - 2, before.1 + 2, before.2), "reserved at creation");
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!((status, body["error"].as_str()), (402, Some("Payment Required")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("Your card was declined."), "{body}");
    // Answered once the stock is back on sale.
    assert_eq!(stock(&s, 3).await, before, "released by the decline");
    let (_, failed) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!(
        (failed["status"].as_str(), failed["error_code"].as_str(), failed["failure_reason"].as_str()),
        (Some("failed"), Some("card_declined"), Some("Your card was declined."))
    );
    let (_, notes) = s.get("/api/v1/notifications?user_id=vic").await;
    let titles: Vec<&str> = notes["notifications"].as_array().unwrap().iter().filter_map(|n| n["title"].as_str()).collect();
    assert!(titles.contains(&"Payment Failed"), "{notes}");

    // A retry is a new charge through the provider (a new attempt, its own key): declined again.
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/retry"), None).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(stock(&s, 3).await, before);

    // tok_visa is charged: the provider names the charge, whatever the client says.
    let id = pending(&s, "wes", 3, 1, "tok_visa").await;
    let (status, done) = s.send("POST", &format!("/api/payments/{id}/process"), Some(json!({"provider_id": "client-says"}))).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")), "{done}");
    assert!(done["provider_id"].as_str().unwrap().starts_with("pi_sim_"), "{done}");
    assert_eq!(stock(&s, 3).await, (before.0 - 1, before.1, before.2 + 1), "sold");

    // Refunds go through the provider too, each a record of its own; the last one restocks.
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"amount": 1, "reason": "scratched"}))).await;
    assert_eq!((status, body["status"].as_str(), body["refunded_amount"].as_f64()), (200, Some("refunded"), Some(1.0)), "{body}");
    assert_eq!(stock(&s, 3).await, (before.0 - 1, before.1, before.2 + 1), "a partial refund restocks nothing");
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"amount": 1000}))).await;
    assert_eq!(status, 400, "more than is left: {body}");
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"reason": "returned"}))).await;
    assert_eq!((status, body["refunded_amount"].clone()), (200, done["amount"].clone()), "{body}");
    assert_eq!(stock(&s, 3).await, before, "everything back: back on sale");
    let (status, refunds) = s.get(&format!("/api/payments/{id}/refunds")).await;
    assert_eq!(status, 200);
    let refunds = refunds.as_array().unwrap();
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    assert_eq!((refunds[0]["amount"].as_f64(), refunds[0]["reason"].as_str()), (Some(1.0), Some("scratched")));
    assert_eq!(refunds[1]["reason"].as_str(), Some("returned"));
    for r in refunds {
        assert_eq!((r["status"].as_str(), r["payment_id"].as_str()), (Some("succeeded"), Some(id.as_str())), "{r}");
        assert!(r["provider_refund_id"].as_str().unwrap().starts_with("re_sim_"), "{r}");
    }
    assert_eq!(s.get("/api/payments/nope/refunds").await.0, 404);

    // Every call is counted by outcome, under the old payment service's names.
    let metrics = s.metrics().await;
    assert!(metrics.contains("payment_service_simulated_api_calls_total{operation=\"charge\",status=\"declined\"} 2"), "{metrics}");
    assert!(metrics.contains("payment_service_simulated_api_calls_total{operation=\"charge\",status=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("payment_service_simulated_api_duration_seconds_count{operation=\"charge\"} 3"), "{metrics}");
    assert!(metrics.contains("payment_service_simulated_api_calls_total{operation=\"refund\",status=\"succeeded\"} 2"), "{metrics}");

    // Other providers keep the old behaviour: the client's provider_id, no token needed.
    s.send("POST", "/baskets/xia/items", Some(json!({"product_id": 4, "quantity": 1}))).await;
    let (_, p) = s.send("POST", "/api/payments", Some(json!({"user_id": "xia", "method": "paypal", "provider": "paypal"}))).await;
    let (status, done) =
        s.send("POST", &format!("/api/payments/{}/process", p["id"].as_str().unwrap()), Some(json!({"provider_id": "PAY-1"}))).await;
    assert_eq!((status, done["provider_id"].as_str()), (200, Some("PAY-1")), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_in_time_fails_the_payment_retryably_and_releases_the_stock() {
    let toml = "[payments]\ntimeout_ms = 50\nattempts = 2\nbackoff_ms = 10\n[payments.simulated]\nlatency_ms = 5000\n";
    let s = Server::start_configured(tempfile::tempdir().unwrap(), toml, &[]);
    let before = stock(&s, 5).await;
    let id = pending(&s, "yan", 5, 1, "tok_visa").await;
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nothing was charged"), "{body}");
    assert_eq!(stock(&s, 5).await, before, "released");
    let (_, failed) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!((failed["status"].as_str(), failed["error_code"].as_str()), (Some("failed"), Some("provider_timeout")), "{failed}");
    let metrics = s.metrics().await;
    assert!(metrics.contains("payment_service_simulated_api_calls_total{operation=\"charge\",status=\"timeout\"} 2"), "{metrics}");
    assert!(metrics.contains("payment_service_simulated_api_calls_total{operation=\"void\",status=\"voided\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_interrupted_by_kill_9_is_asked_again_with_its_key_at_restart() {
    let slow = "[payments.simulated]\nlatency_ms = 60000\n";
    let s = Server::start_configured(tempfile::tempdir().unwrap(), slow, &[]);
    let before = stock(&s, 7).await;
    let id = pending(&s, "zed", 7, 2, "tok_visa").await;
    // The process call waits for the provider; meanwhile the payment is durably `processing`.
    let client = s.client.clone();
    let url = s.url(&format!("/api/payments/{id}/process"));
    let waiting = tokio::spawn(async move { client.post(url).send().await });
    s.until(&format!("/api/payments/{id}"), |p| p["status"] == "processing").await;
    let dir = s.kill_keep_data();
    assert!(waiting.await.unwrap().is_err(), "the caller lost its connection with the process");

    let s = Server::start_configured(dir, "", &[]);
    let done = s.until(&format!("/api/payments/{id}"), |p| p["status"] == "completed").await;
    assert!(done["provider_id"].as_str().unwrap().starts_with("pi_sim_"), "{done}");
    assert_eq!(stock(&s, 7).await, (before.0 - 2, before.1, before.2 + 2), "sold once");
}
