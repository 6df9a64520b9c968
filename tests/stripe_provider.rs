//! The `stripe` provider against a Stripe-API mock with Stripe's idempotency (tests/common/stripe_mock.rs),
//! over real HTTP against the real binary: the PaymentIntent request, declines with their codes, and a
//! kill -9 after Stripe took the money but before Kassa recorded it, which still charges exactly once.

mod common;
#[path = "common/stripe_mock.rs"]
mod stripe_mock;

use std::time::{Duration, Instant};

use common::Server;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use stripe_mock::StripeMock;

async fn pending(s: &Server, user: &str, product: u64, quantity: i64, token: &str) -> String {
    let (status, body) =
        s.send("POST", &format!("/baskets/{user}/items"), Some(json!({"product_id": product, "quantity": quantity}))).await;
    assert_eq!(status, 200, "{body}");
    let checkout = json!({"user_id": user, "method": "credit_card", "provider": "stripe", "token": token});
    let (status, p) = s.send("POST", "/api/payments", Some(checkout)).await;
    assert_eq!(status, 201, "{p}");
    p["id"].as_str().unwrap().to_string()
}

/// `12.5` → `1250`, from the number's text (never through a float).
fn minor_units(amount: &Value) -> String {
    let text = amount.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    format!("{whole}{fraction:0<2}").trim_start_matches('0').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_is_charged_with_one_payment_intent_per_attempt_and_declines_carry_stripes_code() {
    let stripe = StripeMock::start();
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &stripe.toml(), &[]);
    let id = pending(&s, "ana", 2, 2, "tok_visa").await;
    let (status, done) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!((status, done["status"].as_str(), done["provider_id"].as_str()), (200, Some("completed"), Some("pi_mock_1")), "{done}");
    let creates = stripe.creates_with(&format!("kassa-{id}-1-charge"));
    assert_eq!(creates.len(), 1, "one request under the charge's key");
    let form = &creates[0];
    assert_eq!(form["amount"], minor_units(&done["amount"]), "minor units");
    assert_eq!((form["currency"].as_str(), form["confirm"].as_str()), ("usd", "true"));
    assert_eq!(form["payment_method_data[card][token]"], "tok_visa");
    assert_eq!(form["metadata[kassa_payment_id]"], id);

    let id = pending(&s, "ben", 2, 1, "tok_chargeDeclinedInsufficientFunds").await;
    let (status, body) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!(status, 402, "{body}");
    let (_, failed) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!((failed["status"].as_str(), failed["error_code"].as_str()), (Some("failed"), Some("insufficient_funds")));
    let id = pending(&s, "cai", 2, 1, "tok_chargeDeclined").await;
    s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    let (_, failed) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!(failed["error_code"].as_str(), Some("card_declined"), "a generic decline is card_declined");
    assert_eq!(stripe.captures(), 1);

    // A refund is a Stripe Refund of the intent, under the refund's own key.
    let paid = done["id"].as_str().unwrap();
    let (status, body) = s.send("POST", &format!("/api/payments/{paid}/refund"), Some(json!({"amount": 0.5}))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("refunded")), "{body}");
    let (_, refunds) = s.get(&format!("/api/payments/{paid}/refunds")).await;
    assert_eq!(refunds[0]["provider_refund_id"].as_str(), Some("re_mock_1"), "{refunds}");
    assert_eq!(stripe.refunds(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_stripe_charged_and_before_kassa_recorded_it_charges_exactly_once() {
    let stripe = StripeMock::start();
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &stripe.toml(), &[]);
    let id = pending(&s, "dia", 6, 3, "tok_visa").await;
    stripe.hold_answers(true);
    let client = s.client.clone();
    let url = s.url(&format!("/api/payments/{id}/process"));
    let waiting = tokio::spawn(async move { client.post(url).send().await });
    // Stripe has taken the money; its answer never reaches Kassa.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stripe.captures() == 0 {
        assert!(Instant::now() < deadline, "the charge never reached the mock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = s.kill_keep_data();
    assert!(waiting.await.unwrap().is_err());
    stripe.hold_answers(false);

    let s = Server::start_configured(dir, &stripe.toml(), &[]);
    let done = s.until(&format!("/api/payments/{id}"), |p| p["status"] == "completed").await;
    assert_eq!(done["provider_id"].as_str(), Some("pi_mock_1"), "the first charge, replayed");
    assert_eq!(stripe.captures(), 1, "charged exactly once");
    assert_eq!(stripe.creates_with(&format!("kassa-{id}-1-charge")).len(), 2, "asked again after the restart, under the same key");
    let (_, p) = s.get("/products/6").await;
    assert_eq!(p["reserved"].as_i64(), Some(0), "sold, not held: {p}");
}

/// A `Stripe-Signature` header for `body` at `t`, as Stripe signs it.
fn signature(secret: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stripe_webhook_settles_a_processing_charge_once_and_an_unsigned_one_nothing() {
    let stripe = StripeMock::start();
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &stripe.toml_with_webhooks("whsec_kassa"), &[]);
    let id = pending(&s, "eli", 2, 1, "tok_processing").await;
    let (status, p) = s.send("POST", &format!("/api/payments/{id}/process"), None).await;
    assert_eq!((status, p["status"].as_str()), (202, Some("processing")), "Stripe is still at it: {p}");
    let (_, product) = s.get("/products/2").await;
    let reserved = product["reserved"].as_i64().unwrap();

    let event = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_mock_1", "status": "succeeded", "metadata": {"kassa_payment_id": id, "kassa_attempt": "1"}}}})
    .to_string();
    let deliver = |sig: String| {
        let s = &s;
        let body = event.clone().into_bytes();
        async move { s.raw("POST", "/webhooks/stripe", body, &[("stripe-signature", &sig), ("content-type", "application/json")]).await }
    };
    for forged in [signature("whsec_other", now_secs(), &event), signature("whsec_kassa", now_secs() - 3600, &event), String::new()] {
        let (status, body) = deliver(forged).await;
        assert_eq!(status, 400, "{body}");
    }
    let (_, still) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!(still["status"].as_str(), Some("processing"), "an unverified delivery changes nothing");

    let (status, body) = deliver(signature("whsec_kassa", now_secs(), &event)).await;
    assert_eq!(status, 200, "{body}");
    // The charge is settled; the sale across shards follows.
    let done = s.until(&format!("/api/payments/{id}"), |p| p["status"] == "completed").await;
    assert_eq!(done["provider_id"].as_str(), Some("pi_mock_1"), "{done}");
    let (_, product) = s.get("/products/2").await;
    let sold = product["sold"].as_i64().unwrap();
    assert_eq!(product["reserved"].as_i64(), Some(reserved - 1));

    // Stripe delivers at least once: the same event again is answered alike and sells nothing more.
    let (status, again) = deliver(signature("whsec_kassa", now_secs(), &event)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(s.get("/products/2").await.1["sold"].as_i64(), Some(sold));
    let (status, _) = s.raw("POST", "/webhooks/paypal", event.clone().into_bytes(), &[]).await;
    assert_eq!(status, 404, "no webhooks for a provider Kassa does not charge through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_stripe_leaves_pending_is_settled_by_its_signed_webhook_either_way() {
    let stripe = StripeMock::start();
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &stripe.toml_with_webhooks("whsec_kassa"), &[]);
    let id = pending(&s, "fio", 4, 1, "tok_visa").await;
    assert_eq!(s.send("POST", &format!("/api/payments/{id}/process"), None).await.0, 200);
    stripe.refunds_pending(true);
    let refund_event = |event_id: &str, refund_id: &str, status: &str| {
        json!({"id": event_id, "type": "refund.updated", "data": {"object": {"id": "re_mock_x", "status": status,
            "failure_reason": "lost_or_stolen_card", "metadata": {"kassa_payment_id": id, "kassa_refund_id": refund_id}}}})
        .to_string()
    };
    let deliver = |body: String| {
        let s = &s;
        async move {
            let sig = signature("whsec_kassa", now_secs(), &body);
            s.raw("POST", "/webhooks/stripe", body.into_bytes(), &[("stripe-signature", &sig), ("content-type", "application/json")]).await
        }
    };

    // Stripe took the refund and finishes it later: the payment keeps its money until it says so.
    let (status, p) = s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"amount": 1}))).await;
    assert_eq!((status, p["status"].as_str(), p["refunded_amount"].as_f64()), (200, Some("completed"), Some(0.0)), "{p}");
    let (_, refunds) = s.get(&format!("/api/payments/{id}/refunds")).await;
    assert_eq!(refunds[0]["status"].as_str(), Some("pending"), "{refunds}");
    let first = refunds[0]["id"].as_str().unwrap().to_string();
    let (status, _) = s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"amount": 1}))).await;
    assert_eq!(status, 409, "one refund at a time while the provider has one");

    let (status, body) = deliver(refund_event("evt_r1", &first, "succeeded")).await;
    assert_eq!(status, 200, "{body}");
    let (_, p) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!((p["status"].as_str(), p["refunded_amount"].as_f64()), (Some("refunded"), Some(1.0)), "{p}");

    // A second refund that Stripe later fails: recorded as failed, no money moved.
    s.send("POST", &format!("/api/payments/{id}/refund"), Some(json!({"amount": 2}))).await;
    let (_, refunds) = s.get(&format!("/api/payments/{id}/refunds")).await;
    let second = refunds[1]["id"].as_str().unwrap().to_string();
    let (status, body) = deliver(refund_event("evt_r2", &second, "failed")).await;
    assert_eq!(status, 200, "{body}");
    let (_, refunds) = s.get(&format!("/api/payments/{id}/refunds")).await;
    assert_eq!(
        (refunds[0]["status"].as_str(), refunds[1]["status"].as_str(), refunds[1]["failure_reason"].as_str()),
        (Some("succeeded"), Some("failed"), Some("lost_or_stolen_card")),
        "{refunds}"
    );
    assert_eq!(s.get(&format!("/api/payments/{id}")).await.1["refunded_amount"].as_f64(), Some(1.0));

    // The first refund, which had succeeded, fails later: taken back, the payment is completed again
    // (no second completion is announced), and the user is told.
    let (status, body) = deliver(refund_event("evt_r3", &first, "failed")).await;
    assert_eq!(status, 200, "{body}");
    let (_, p) = s.get(&format!("/api/payments/{id}")).await;
    assert_eq!((p["status"].as_str(), p["refunded_amount"].as_f64()), (Some("completed"), Some(0.0)), "{p}");
    let (_, refunds) = s.get(&format!("/api/payments/{id}/refunds")).await;
    assert_eq!((refunds[0]["status"].as_str(), refunds[0]["failure_reason"].as_str()), (Some("failed"), Some("lost_or_stolen_card")));
    let (_, notes) = s.get("/api/v1/notifications?user_id=fio").await;
    let titles: Vec<&str> = notes["notifications"].as_array().unwrap().iter().filter_map(|n| n["title"].as_str()).collect();
    assert!(titles.contains(&"Refund Failed"), "{notes}");
    // The same event again changes nothing.
    assert_eq!(deliver(refund_event("evt_r3", &first, "failed")).await.0, 200);
    assert_eq!(s.get(&format!("/api/payments/{id}")).await.1["refunded_amount"].as_f64(), Some(0.0));
}
