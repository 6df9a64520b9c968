//! Notifications delivered to real receivers through the real binary: signed webhooks to a receiver this
//! test runs (one that fails three times and then takes it, one that never answers, a scheduled send),
//! and email through the services script's Mailpit over STARTTLS, read back from Mailpit's HTTP API.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::Server;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_kassa_test";

/// How the receiver answers one request.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Holds the request open and never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Clone)]
struct Seen {
    at: Instant,
    wall: SystemTime,
    delivery: String,
    attempt: u32,
    signature: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Script {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers in order; when they run out, `then`.
    answers: Arc<Mutex<VecDeque<Answer>>>,
    then: Arc<Mutex<Option<Answer>>>,
}

/// A webhook receiver on a port of its own, answering as scripted.
struct Receiver {
    url: String,
    script: Script,
}

impl Receiver {
    async fn start(answers: &[Answer], then: Answer) -> Receiver {
        let script = Script::default();
        script.answers.lock().extend(answers.iter().copied());
        *script.then.lock() = Some(then);
        let app = axum::Router::new().route("/hook", post(take)).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("receiver binds");
        let url = format!("http://{}/hook", listener.local_addr().expect("receiver address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
        Receiver { url, script }
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().clone()
    }

    fn answer_from_now(&self, answer: Answer) {
        self.script.answers.lock().clear();
        *self.script.then.lock() = Some(answer);
    }
}

async fn take(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    script.seen.lock().push(Seen {
        at: Instant::now(),
        wall: SystemTime::now(),
        delivery: header("x-kassa-delivery"),
        attempt: header("x-kassa-attempt").parse().unwrap_or(0),
        signature: header("x-kassa-signature"),
        body: body.to_vec(),
    });
    let answer = { script.answers.lock().pop_front().or(*script.then.lock()).expect("an answer") };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).expect("a status"),
        Answer::Hang => std::future::pending().await,
    }
}

fn signed(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn webhook_config(url: &str, max_attempts: u32, backoff_ms: u64, timeout_ms: u64) -> String {
    format!(
        "[notifications.webhook]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nmax_attempts = {max_attempts}\nbackoff_ms = {backoff_ms}\ntimeout_ms = {timeout_ms}\n"
    )
}

/// Creates an urgent notification on `channel` (sent at once); answers its JSON.
async fn urgent(s: &Server, channel: &str, data: Value) -> Value {
    let note = json!({"user_id": "nia", "title": "Your order shipped", "message": "It is on its way.", "type": "order",
        "channel": channel, "priority": "high", "data": data});
    let (status, body) = s.send("POST", "/api/v1/notifications", Some(note)).await;
    assert_eq!(status, 201, "{body}");
    body["notification"].clone()
}

async fn settled(s: &Server, id: &str) -> Value {
    let body = s
        .until(&format!("/api/v1/notifications/{id}"), |b| matches!(b["notification"]["status"].as_str(), Some("delivered" | "failed")))
        .await;
    body["notification"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_failing_three_times_is_delivered_on_the_fourth_attempt_after_doubling_backoff() {
    let receiver = Receiver::start(&[Answer::Status(500); 3], Answer::Status(200)).await;
    let backoff = Duration::from_millis(200);
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &webhook_config(&receiver.url, 5, 200, 2000), &[]);

    let sent = urgent(&s, "webhook", json!({"order": "42"})).await;
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!((sent["status"].as_str(), sent["delivery_id"].as_str()), (Some("sent"), Some(format!("{id}-1").as_str())), "{sent}");
    let done = settled(&s, &id).await;
    assert_eq!(done["status"].as_str(), Some("delivered"), "{done}");
    assert!(done["delivered_at"].is_string() && done["next_attempt_at"].is_null(), "{done}");

    // Every attempt is recorded: three failures with the receiver's status, then the delivery.
    let attempts = done["deliveries"].as_array().unwrap();
    let outcomes: Vec<(u64, &str, &str)> =
        attempts.iter().map(|a| (a["attempt"].as_u64().unwrap(), a["outcome"].as_str().unwrap(), a["error"].as_str().unwrap())).collect();
    assert_eq!(outcomes, vec![(1, "failed", "HTTP 500"), (2, "failed", "HTTP 500"), (3, "failed", "HTTP 500"), (4, "delivered", "")]);
    assert!(attempts.iter().all(|a| a["delivery_id"] == sent["delivery_id"] && a["at"].is_string()), "{done}");

    // The receiver got four signed POSTs of the notification's JSON, one delivery id, attempts 1 to 4.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 4, "one request per attempt");
    for (i, request) in seen.iter().enumerate() {
        assert_eq!((request.delivery.as_str(), request.attempt), (format!("{id}-1").as_str(), i as u32 + 1));
        assert_eq!(request.signature, signed(&request.body), "X-Kassa-Signature is the HMAC-SHA256 of the body");
        let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
        assert_eq!(
            (body["id"].as_str(), body["title"].as_str(), body["data"]["order"].as_str()),
            (Some(id.as_str()), Some("Your order shipped"), Some("42"))
        );
        assert_eq!(body["deliveries"].as_array().unwrap().len(), i, "the body says what was tried before");
    }
    assert_ne!(seen[0].signature, signed(b"{}"), "a signature belongs to its body");
    // Each retry waited at least its backoff: 200 ms, then 400, then 800 (jitter only adds).
    for (i, pair) in seen.windows(2).enumerate() {
        let wait = pair[1].at - pair[0].at;
        assert!(wait >= backoff * (1 << i), "attempt {} came {wait:?} after the one before", i + 2);
    }

    let text = s.metrics().await;
    for line in [
        r#"notification_delivery_attempts_total{channel="webhook",outcome="retryable"} 3"#,
        r#"notification_delivery_attempts_total{channel="webhook",outcome="delivered"} 1"#,
        r#"notification_delivered_total{channel="webhook"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in /metrics:\n{text}");
    }
    assert!(text.contains(r#"notification_delivery_duration_seconds_count{channel="webhook"} 4"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_leaves_the_notification_failed_with_every_attempt_and_retry_starts_anew() {
    let receiver = Receiver::start(&[], Answer::Hang).await;
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &webhook_config(&receiver.url, 3, 50, 300), &[]);

    let sent = urgent(&s, "webhook", json!({})).await;
    let id = sent["id"].as_str().unwrap().to_string();
    let dead = settled(&s, &id).await;
    assert_eq!(dead["status"].as_str(), Some("failed"), "{dead}");
    let attempts = dead["deliveries"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "every attempt recorded: {dead}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!((a["attempt"].as_u64(), a["outcome"].as_str()), (Some(i as u64 + 1), Some("failed")), "{dead}");
        assert!(a["error"].as_str().unwrap().contains("timed out"), "{dead}");
    }
    assert_eq!(receiver.seen().len(), 3, "no attempt after the last");
    let text = s.metrics().await;
    assert!(text.lines().any(|l| l == r#"notification_failed_total{channel="webhook"} 1"#), "{text}");

    // Retry re-queues it: a new delivery, from attempt 1, which the receiver now takes.
    receiver.answer_from_now(Answer::Status(204));
    let (status, body) = s.send("POST", &format!("/api/v1/notifications/{id}/retry"), None).await;
    assert_eq!((status, body["notification"]["status"].as_str()), (200, Some("sent")), "{body}");
    let done = settled(&s, &id).await;
    assert_eq!(done["status"].as_str(), Some("delivered"), "{done}");
    let last = done["deliveries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["delivery_id"].as_str(), last["attempt"].as_u64()), (Some(format!("{id}-2").as_str()), Some(1)), "{done}");
    assert_eq!(receiver.seen().last().unwrap().delivery, format!("{id}-2"));

    // A receiver that refuses for good (a 4xx other than 408 and 429) is not asked again.
    receiver.answer_from_now(Answer::Status(410));
    let refused = urgent(&s, "webhook", json!({})).await;
    let refused = settled(&s, refused["id"].as_str().unwrap()).await;
    assert_eq!((refused["status"].as_str(), refused["deliveries"].as_array().unwrap().len()), (Some("failed"), 1), "{refused}");
    assert_eq!(refused["deliveries"][0]["error"].as_str(), Some("HTTP 410"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_webhook_goes_out_when_it_is_due() {
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &webhook_config(&receiver.url, 5, 200, 2000), &[]);
    // Due at the start of a whole second, 1 to 2 s from now.
    let due_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
    let note = json!({"user_id": "nia", "title": "Sale starts", "message": "Now.", "type": "marketing", "channel": "webhook",
        "send_at": rfc3339(due_s)});
    let (status, body) = s.send("POST", "/api/v1/notifications/schedule", Some(note)).await;
    assert_eq!((status, body["notification"]["status"].as_str()), (201, Some("pending")), "{body}");
    assert!(receiver.seen().is_empty(), "not before it is due");
    let id = body["notification"]["id"].as_str().unwrap().to_string();
    let done = settled(&s, &id).await;
    assert_eq!(done["status"].as_str(), Some("delivered"), "{done}");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].wall >= UNIX_EPOCH + Duration::from_secs(due_s), "sent at its time, not before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_and_push_go_to_their_own_endpoints_behind_the_same_sender() {
    let (sms, push) = (Receiver::start(&[], Answer::Status(202)).await, Receiver::start(&[Answer::Status(503)], Answer::Status(200)).await);
    let config = format!(
        "[notifications.sms]\nurl = \"{}\"\nbackoff_ms = 50\n[notifications.push]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nbackoff_ms = 50\n",
        sms.url, push.url
    );
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &config, &[]);
    let text = urgent(&s, "sms", json!({"phone": "+4912345"})).await;
    let note = urgent(&s, "push", json!({})).await;
    let text = settled(&s, text["id"].as_str().unwrap()).await;
    let note = settled(&s, note["id"].as_str().unwrap()).await;
    assert_eq!((text["status"].as_str(), text["deliveries"].as_array().unwrap().len()), (Some("delivered"), 1), "{text}");
    assert_eq!((note["status"].as_str(), note["deliveries"].as_array().unwrap().len()), (Some("delivered"), 2), "{note}");
    let (sms_seen, push_seen) = (sms.seen(), push.seen());
    assert_eq!((sms_seen.len(), push_seen.len()), (1, 2), "each channel to its own endpoint");
    assert!(sms_seen[0].signature.is_empty(), "an endpoint without a secret gets no signature");
    let body: Value = serde_json::from_slice(&sms_seen[0].body).unwrap();
    assert_eq!((body["channel"].as_str(), body["data"]["phone"].as_str()), (Some("sms"), Some("+4912345")));
    assert!(push_seen.iter().all(|r| r.signature == signed(&r.body)), "a push endpoint with a secret gets signed bodies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_kill_9_is_made_again_after_the_restart() {
    let receiver = Receiver::start(&[], Answer::Hang).await;
    let config = webhook_config(&receiver.url, 5, 50, 60_000);
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &config, &[]);
    let sent = urgent(&s, "webhook", json!({})).await;
    let id = sent["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.seen().is_empty() {
        assert!(Instant::now() < deadline, "the first attempt never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed while the receiver holds the first attempt: its outcome is never recorded.
    let dir = s.kill_keep_data();
    receiver.answer_from_now(Answer::Status(200));
    let s = Server::start_configured(dir, &config, &[]);
    let done = settled(&s, &id).await;
    assert_eq!(done["status"].as_str(), Some("delivered"), "{done}");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "made again once");
    assert_eq!((seen[1].delivery.as_str(), seen[1].attempt), (seen[0].delivery.as_str(), 1), "the same attempt, so the receiver can tell");
    assert_eq!(done["deliveries"].as_array().unwrap().len(), 1, "{done}");
}

/// `secs` since the epoch as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_smtp_with_starttls_and_arrives_with_its_subject_and_body() {
    let (host, port, ca, mailpit) = (env("KASSA_SMTP_HOST"), env("KASSA_SMTP_PORT"), env("KASSA_SMTP_CA"), env("KASSA_MAILPIT_URL"));
    let config = format!(
        "[notifications.smtp]\nhost = \"{host}\"\nport = {port}\nfrom = \"Kassa Shop <shop@kassa.test>\"\nstarttls = true\n\
         username = \"kassa\"\npassword = \"secret\"\nca_file = \"{ca}\"\nmax_attempts = 3\nbackoff_ms = 100\n"
    );
    let s = Server::start_configured(tempfile::tempdir().unwrap(), &config, &[]);
    let marker = format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    let to = format!("buyer-{marker}@example.com");
    let note = json!({"user_id": "nia", "title": format!("Order {marker} shipped"), "message": format!("Parcel {marker} is on its way."),
        "type": "order", "channel": "email", "priority": "high", "data": {"email": to}});
    let (status, body) = s.send("POST", "/api/v1/notifications", Some(note)).await;
    assert_eq!(status, 201, "{body}");
    let done = settled(&s, body["notification"]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"].as_str(), Some("delivered"), "{done}");

    // Mailpit has it: to the notification's address, with its title as subject and its message as body.
    let client = reqwest::Client::new();
    let list: Value = client.get(format!("{mailpit}/api/v1/search?query=to:{to}")).send().await.unwrap().json().await.unwrap();
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{list}");
    assert_eq!(messages[0]["Subject"].as_str(), Some(format!("Order {marker} shipped").as_str()), "{list}");
    let id = messages[0]["ID"].as_str().unwrap();
    let message: Value = client.get(format!("{mailpit}/api/v1/message/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(message["Text"].as_str().map(str::trim), Some(format!("Parcel {marker} is on its way.").as_str()), "{message}");
    assert_eq!(message["From"]["Address"].as_str(), Some("shop@kassa.test"), "{message}");

    // A notification with no address to send to fails at once, saying why.
    let note = json!({"user_id": "nia", "title": "t", "message": "m", "type": "order", "channel": "email", "priority": "high"});
    let (_, body) = s.send("POST", "/api/v1/notifications", Some(note)).await;
    let failed = settled(&s, body["notification"]["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"].as_str(), Some("failed"), "{failed}");
    assert!(failed["deliveries"][0]["error"].as_str().unwrap().contains("no recipient"), "{failed}");
}
