#![allow(dead_code)]
//! A stateful stand-in for Stripe's PaymentIntents API that the tests start on a thread of their own:
//! it keeps Stripe's idempotency (a repeated `Idempotency-Key` gets the first answer replayed), counts
//! captures, answers Stripe's test tokens as Stripe does, and can hold its answers back after charging,
//! so that a test can kill Kassa between the provider's charge and Kassa's record of it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::watch;

pub const API_KEY: &str = "sk_test_kassa";

#[derive(Default)]
struct Ledger {
    /// Idempotency key → the first answer, replayed for every repeat.
    answers: HashMap<String, (u16, Value)>,
    /// Intent id → its status.
    intents: HashMap<String, String>,
    /// Intent id → its amount and what was refunded of it.
    amounts: HashMap<String, (i64, i64)>,
    /// Every refund made: its id.
    refunds: Vec<String>,
    /// Refunds are answered `pending` (Stripe settles them later, by webhook).
    refunds_pending: bool,
    /// Every create: its idempotency key and form.
    creates: Vec<(String, HashMap<String, String>)>,
}

#[derive(Clone)]
struct Mock {
    ledger: Arc<Mutex<Ledger>>,
    hold: watch::Receiver<bool>,
}

pub struct StripeMock {
    pub url: String,
    ledger: Arc<Mutex<Ledger>>,
    hold: watch::Sender<bool>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl StripeMock {
    pub fn start() -> StripeMock {
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        let (hold, held) = watch::channel(false);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let mock = Mock { ledger: ledger.clone(), hold: held };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("mock runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("mock binds");
                ready.send(listener.local_addr().expect("mock address")).expect("test waits");
                let app = axum::Router::new()
                    .route("/v1/payment_intents", post(create))
                    .route("/v1/payment_intents/{id}/cancel", post(cancel))
                    .route("/v1/refunds", post(refund))
                    .with_state(mock);
                let stop = tokio::task::spawn_blocking(move || {
                    let _ = stopped.recv();
                });
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stop => {}
                }
            });
        });
        let addr = bound.recv().expect("mock started");
        StripeMock { url: format!("http://{addr}"), ledger, hold, _stop: stop }
    }

    /// Intents that took the money.
    pub fn captures(&self) -> usize {
        self.ledger.lock().intents.values().filter(|s| *s == "succeeded").count()
    }

    /// Refunds made (each idempotency key counts once).
    pub fn refunds(&self) -> usize {
        self.ledger.lock().refunds.len()
    }

    /// The forms of every create sent with `key`, first-sent first.
    pub fn creates_with(&self, key: &str) -> Vec<HashMap<String, String>> {
        self.ledger.lock().creates.iter().filter(|(k, _)| k == key).map(|(_, f)| f.clone()).collect()
    }

    /// `toml` with the webhook signing secret `secret`.
    pub fn toml_with_webhooks(&self, secret: &str) -> String {
        format!("{}webhook_secret = \"{secret}\"\n", self.toml())
    }

    /// While on, a create charges and then keeps its answer back (the connection stays open).
    pub fn refunds_pending(&self, on: bool) {
        self.ledger.lock().refunds_pending = on;
    }

    pub fn hold_answers(&self, on: bool) {
        self.hold.send_replace(on);
    }

    /// Kassa's `[payments.stripe]` section for this mock.
    pub fn toml(&self) -> String {
        format!("[payments.stripe]\nenabled = true\napi_key = \"{API_KEY}\"\nbase_url = \"{}\"\n", self.url)
    }
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {API_KEY}"))
}

async fn create(State(mock): State<Mock>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> axum::response::Response {
    if !authorised(&headers) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"type": "invalid_request_error", "message": "bad key"}})))
            .into_response();
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (status, answer) = {
        let mut ledger = mock.ledger.lock();
        ledger.creates.push((key.clone(), form.clone()));
        if let Some(first) = ledger.answers.get(&key) {
            first.clone()
        } else {
            let token = form.get("payment_method_data[card][token]").map(String::as_str).unwrap_or_default();
            let first = match token {
                "tok_chargeDeclined" => (402, card_error("card_declined", "generic_decline", "Your card was declined.")),
                "tok_processing" => {
                    let id = format!("pi_mock_{}", ledger.intents.len() + 1);
                    ledger.intents.insert(id.clone(), "processing".into());
                    (200, json!({"id": id, "object": "payment_intent", "status": "processing"}))
                }
                "tok_chargeDeclinedInsufficientFunds" => {
                    (402, card_error("card_declined", "insufficient_funds", "Your card has insufficient funds."))
                }
                _ => {
                    let id = format!("pi_mock_{}", ledger.intents.len() + 1);
                    ledger.intents.insert(id.clone(), "succeeded".into());
                    let amount = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
                    ledger.amounts.insert(id.clone(), (amount, 0));
                    (200, json!({"id": id, "object": "payment_intent", "status": "succeeded", "amount": form.get("amount")}))
                }
            };
            if !key.is_empty() {
                ledger.answers.insert(key, first.clone());
            }
            first
        }
    };
    let mut hold = mock.hold.clone();
    let _ = hold.wait_for(|on| !on).await;
    (StatusCode::from_u16(status).expect("status"), axum::Json(answer)).into_response()
}

async fn cancel(State(mock): State<Mock>, headers: HeaderMap, Path(id): Path<String>) -> axum::response::Response {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut ledger = mock.ledger.lock();
    match ledger.intents.get_mut(&id) {
        Some(status) if status != "succeeded" => {
            *status = "canceled".into();
            axum::Json(json!({"id": id, "object": "payment_intent", "status": "canceled"})).into_response()
        }
        Some(_) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state"}})),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})))
            .into_response(),
    }
}

async fn refund(State(mock): State<Mock>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> axum::response::Response {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut ledger = mock.ledger.lock();
    if let Some((status, answer)) = ledger.answers.get(&key).cloned() {
        return (StatusCode::from_u16(status).expect("status"), axum::Json(answer)).into_response();
    }
    let intent = form.get("payment_intent").cloned().unwrap_or_default();
    let amount: i64 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let n = ledger.refunds.len() + 1;
    let pending = ledger.refunds_pending;
    let (status, answer) = match ledger.amounts.get_mut(&intent) {
        None => (
            404,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payment_intent: {intent}")}}),
        ),
        Some((total, refunded)) if *refunded + amount > *total => (
            400,
            json!({"error": {"type": "invalid_request_error", "code": "charge_already_refunded", "message": "Refund is more than the charge."}}),
        ),
        Some((_, refunded)) => {
            *refunded += amount;
            let status = if pending { "pending" } else { "succeeded" };
            (200, json!({"id": format!("re_mock_{n}"), "object": "refund", "status": status, "amount": amount}))
        }
    };
    if status == 200 {
        ledger.refunds.push(format!("re_mock_{n}"));
    }
    ledger.answers.insert(key, (status, answer.clone()));
    (StatusCode::from_u16(status).expect("status"), axum::Json(answer)).into_response()
}

fn card_error(code: &str, decline_code: &str, message: &str) -> Value {
    json!({"error": {"type": "card_error", "code": code, "decline_code": decline_code, "message": message}})
}
