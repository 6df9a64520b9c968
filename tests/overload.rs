//! A flooded node sheds load and says so. `kassa serve` with two shards whose mailboxes hold two
//! commands each gets hundreds of concurrent writes over HTTP: every one is answered, either with its
//! usual success or with 503 `{"error": "overloaded", "message": ...}` and a `Retry-After` header —
//! never another status, never no answer — and afterwards the node holds exactly what it said it did:
//! each basket has the lines whose add was answered 200, each user whose checkout was answered 201 has
//! that one payment with those lines reserved, each user has the notifications whose create was
//! answered 201, and a refused write left nothing behind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::Server;
use serde_json::{Value, json};

const USERS: usize = 40;
/// Each user adds each product once: USERS × PRODUCTS concurrent adds per round.
const PRODUCTS: usize = 10;
/// Rounds until one of them saw a refusal (fresh users each round, so each round's state is checked).
const ROUNDS_MAX: usize = 5;
const STOCK: i64 = 1_000_000;
/// Notifications each user creates per round, all at once.
const NOTIFICATIONS: usize = 5;

/// One answer: status, `Retry-After`, body.
type Answer = (u16, Option<String>, Value);

async fn send(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Answer, String> {
    let mut req = client.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.map_err(|e| format!("{url}: no answer: {e}"))?;
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or("<not text>").to_string());
    let text = r.text().await.map_err(|e| format!("{url}: body cut off: {e}"))?;
    let body = serde_json::from_str(&text).map_err(|e| format!("{url}: {status}: not JSON ({e}): {text:?}"))?;
    Ok((status, retry_after, body))
}

/// Whether `answer` is the overload refusal, exactly as declared: 503, `Retry-After` whole seconds ≥ 1,
/// the envelope with `error` "overloaded". Panics on any other non-success answer.
fn refused(what: &str, success: u16, answer: &Answer) -> bool {
    let (status, retry_after, body) = answer;
    if *status == success {
        return false;
    }
    assert_eq!(*status, 503, "{what}: neither {success} nor 503 overloaded: {body}");
    let keys: BTreeSet<&str> = body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(keys, BTreeSet::from(["error", "message"]), "{what}: the error envelope: {body}");
    assert_eq!(body["error"], "overloaded", "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    let secs = retry_after.as_deref().and_then(|v| v.parse::<u64>().ok());
    assert!(secs.is_some_and(|s| s >= 1), "{what}: Retry-After {retry_after:?}");
    true
}

/// Sends every request at once (each in its own task, released together) and returns the answers in
/// order; a request that got no answer fails the test.
async fn flood(client: &reqwest::Client, requests: Vec<(reqwest::Method, String, Option<Value>)>) -> Vec<Answer> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(method, url, body)| {
            let (client, start) = (client.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                send(&client, method, url, body).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.expect("task").unwrap_or_else(|e| panic!("{e}")));
    }
    answers
}

/// A setup request, sent alone; retried (a bounded number of times) in the unlikely case that it is
/// refused as overloaded.
async fn admitted(client: &reqwest::Client, method: reqwest::Method, url: String, body: Value, success: u16) -> Value {
    for _ in 0..100 {
        let answer = send(client, method.clone(), url.clone(), Some(body.clone())).await.unwrap_or_else(|e| panic!("{e}"));
        if !refused(&url, success, &answer) {
            return answer.2;
        }
    }
    panic!("{url}: refused as overloaded 100 times in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_done_or_overloaded_and_the_state_is_what_was_answered() {
    // Peer messages of a checkout share the tiny mailboxes and are dropped when they are full; they are
    // re-driven every 50 ms here instead of every 2 s.
    let s = Server::start_configured(
        tempfile::tempdir().unwrap(),
        "[engine]\nmailbox_capacity = 2\nredrive_after_ms = 50\n",
        &["--seed-catalog", "false"],
    );
    let c = &s.client;
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let body = json!({"name": format!("Flood {i}"), "price": 1.5, "stock": STOCK, "category": "flood"});
        let p = admitted(c, reqwest::Method::POST, s.url("/products"), body, 201).await;
        products.push(p["id"].as_u64().unwrap());
    }
    // Units each product has reserved for the pending payments answered 201, over all rounds.
    let mut reserved: BTreeMap<u64, i64> = products.iter().map(|p| (*p, 0)).collect();
    let (mut refusals, mut notification_refusals, mut rounds) = (0, 0, 0);
    while (refusals == 0 || notification_refusals == 0) && rounds < ROUNDS_MAX {
        rounds += 1;
        let users: Vec<String> = (0..USERS).map(|u| format!("r{rounds}-u{u}")).collect();

        // Adds: each user each product, all at once.
        let adds: Vec<(&String, u64)> = users.iter().flat_map(|u| products.iter().map(move |p| (u, *p))).collect();
        let requests = adds
            .iter()
            .map(|(u, p)| (reqwest::Method::POST, s.url(&format!("/baskets/{u}/items")), Some(json!({"product_id": p, "quantity": 1}))))
            .collect();
        let mut lines: BTreeMap<&String, BTreeSet<u64>> = users.iter().map(|u| (u, BTreeSet::new())).collect();
        for ((u, p), answer) in adds.iter().zip(flood(c, requests).await) {
            if refused(&format!("add {p} for {u}"), 200, &answer) {
                refusals += 1;
            } else {
                lines.get_mut(u).unwrap().insert(*p);
            }
        }
        for (u, expected) in &lines {
            let (status, _, basket) = send(c, reqwest::Method::GET, s.url(&format!("/baskets/{u}")), None).await.unwrap();
            if expected.is_empty() {
                assert_eq!(status, 404, "{u}: every add was refused, so no basket: {basket}");
                continue;
            }
            assert_eq!(status, 200, "{u}: {basket}");
            let held: BTreeMap<u64, i64> = basket["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["product_id"].as_u64().unwrap(), l["quantity"].as_i64().unwrap()))
                .collect();
            let wanted: BTreeMap<u64, i64> = expected.iter().map(|p| (*p, 1)).collect();
            assert_eq!(held, wanted, "{u}: the basket holds exactly the adds answered 200, once each");
        }

        // Checkouts: every user with a basket, all at once (each crosses both shards to reserve).
        let buyers: Vec<&String> = lines.iter().filter(|(_, l)| !l.is_empty()).map(|(u, _)| *u).collect();
        let requests = buyers
            .iter()
            .map(|u| {
                (reqwest::Method::POST, s.url("/payments"), Some(json!({"user_id": u, "method": "credit_card", "provider": "stripe"})))
            })
            .collect();
        let answers = flood(c, requests).await;
        for (u, answer) in buyers.iter().zip(&answers) {
            let paid = !refused(&format!("checkout for {u}"), 201, answer);
            if paid {
                for p in &lines[u] {
                    *reserved.get_mut(p).unwrap() += 1;
                }
            } else {
                refusals += 1;
            }
            let (status, _, list) = send(c, reqwest::Method::GET, s.url(&format!("/payments/user/{u}")), None).await.unwrap();
            assert_eq!(status, 200, "{list}");
            let list = list.as_array().unwrap();
            if !paid {
                assert!(list.is_empty(), "{u}: a refused checkout left no payment: {list:?}");
                continue;
            }
            assert_eq!(list.len(), 1, "{u}: one checkout answered 201, one payment: {list:?}");
            assert_eq!((&list[0]["id"], &list[0]["status"]), (&answer.2["id"], &json!("pending")), "{u}");
            let items: BTreeSet<u64> = list[0]["items"].as_array().unwrap().iter().map(|i| i["product_id"].as_u64().unwrap()).collect();
            assert_eq!(&items, &lines[u], "{u}: the payment is for the basket's lines");
        }

        // Notifications (whose routes shape errors their own way): each user a few, all at once.
        let creates: Vec<&String> = users.iter().flat_map(|u| std::iter::repeat_n(u, NOTIFICATIONS)).collect();
        let requests = creates
            .iter()
            .map(|u| {
                let body = json!({"user_id": u, "title": "Flood", "message": "m", "type": "info", "channel": "email"});
                (reqwest::Method::POST, s.url("/api/v1/notifications"), Some(body))
            })
            .collect();
        let mut created: BTreeMap<&String, u64> = users.iter().map(|u| (u, 0)).collect();
        for (u, answer) in creates.iter().zip(flood(c, requests).await) {
            if refused(&format!("notification for {u}"), 201, &answer) {
                notification_refusals += 1;
            } else {
                *created.get_mut(u).unwrap() += 1;
            }
        }
        for (u, n) in created {
            let (status, _, list) =
                send(c, reqwest::Method::GET, s.url(&format!("/api/v1/notifications?user_id={u}&limit=100")), None).await.unwrap();
            assert_eq!((status, list["total"].as_u64()), (200, Some(n)), "{u}: exactly the creates answered 201: {list}");
        }
    }
    eprintln!("{rounds} round(s): {refusals} basket and payment writes, {notification_refusals} notification writes refused as overloaded");
    assert!(
        refusals > 0,
        "{rounds} rounds of {} concurrent writes never filled a mailbox (else this test shows nothing)",
        USERS * PRODUCTS
    );
    assert!(
        notification_refusals > 0,
        "{rounds} rounds of {} concurrent notification creates never filled a mailbox",
        USERS * NOTIFICATIONS
    );

    // Stock: reserved for exactly the checkouts answered 201, nothing sold, nothing lost.
    for (p, units) in reserved {
        let (status, _, product) = send(c, reqwest::Method::GET, s.url(&format!("/products/{p}")), None).await.unwrap();
        assert_eq!(status, 200, "{product}");
        assert_eq!(
            (product["reserved"].as_i64(), product["stock"].as_i64(), product["sold"].as_i64()),
            (Some(units), Some(STOCK - units), Some(0)),
            "product {p}"
        );
    }
}
