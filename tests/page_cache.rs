//! A category page may come from the page cache (`X-Cache: HIT`), but never one that hides an
//! acknowledged change. Readers keep one category's page hot while a writer changes the category in
//! every way a listing changes (a price, a stock, a product created in it, one moved out, one
//! deleted); every read that starts after a write was acknowledged shows that write or a later one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use common::Server;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CATEGORY: &str = "cached-shelf";
const READERS: usize = 6;
const ROUNDS: u64 = 90;

/// What a page lists that a write can change: (id, name, price, stock), in the listing's id order.
type Listed = Vec<(u64, String, u64, u64)>;

fn listed(page: &Value) -> Listed {
    page["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
            (field("id"), p["name"].as_str().expect("name").to_string(), field("price"), field("stock"))
        })
        .collect()
}

async fn page(s: &Server) -> (Listed, bool) {
    let r = s.client.get(s.url(&format!("/api/products/category/{CATEGORY}"))).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let hit = r.headers().get("x-cache").map(|v| v.as_bytes().to_vec());
    assert!(matches!(hit.as_deref(), Some(b"HIT" | b"MISS")), "a category page says where it came from: {hit:?}");
    let body: Value = r.json().await.expect("JSON page");
    (listed(&body), hit.as_deref() == Some(b"HIT"))
}

fn product(name: &str, price: u64, stock: u64, category: &str) -> Value {
    json!({"name": name, "price": price, "stock": stock, "category": category})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_page_never_hides_an_acknowledged_change() {
    let s = Arc::new(Server::start());
    let mut state: Listed = Vec::new();
    for i in 0..3 {
        let (status, created) = s.send("POST", "/products", Some(product(&format!("shelf {i}"), 100, 10, CATEGORY))).await;
        assert_eq!(status, 201, "{created}");
        state.push((created["id"].as_u64().expect("id"), format!("shelf {i}"), 100, 10));
    }
    state.sort();
    // `history[r]` is the page after write r (pushed before the write is sent, since a write is
    // visible from the moment it is durable, which can be before its answer arrives); `acked` is the
    // last write whose answer arrived.
    let history = Arc::new(Mutex::new(vec![state.clone()]));
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (hits, reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (s, history, acked, done, hits, reads) = (s.clone(), history.clone(), acked.clone(), done.clone(), hits.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                let since = acked.load(Ordering::Acquire) as usize;
                let (got, hit) = page(&s).await;
                let history = history.lock().await;
                let fresh_enough = history[since..].contains(&got);
                assert!(
                    fresh_enough,
                    "a read started after write {since} was acknowledged answered {got:?} (hit: {hit}); since then: {:?}",
                    &history[since..]
                );
                reads.fetch_add(1, Ordering::Relaxed);
                hits.fetch_add(usize::from(hit), Ordering::Relaxed);
            }
        }));
    }

    for round in 1..=ROUNDS {
        let anchor = state[0].0;
        let path = |id: u64| format!("/api/products/{id}");
        let (method, target, body) = match round % 6 {
            // A price, then a stock, of a product that stays.
            0 => {
                state[0].2 = 100 + round;
                ("PUT", path(anchor), Some(product(&state[0].1, state[0].2, state[0].3, CATEGORY)))
            }
            1 => {
                state[0].3 = round;
                ("PUT", path(anchor), Some(product(&state[0].1, state[0].2, state[0].3, CATEGORY)))
            }
            // Products created in the category (their ids are only known from the answers).
            2 | 3 => ("POST", "/products".to_string(), Some(product(&format!("new {round}"), 7, 7, CATEGORY))),
            // The newest product moved to another category.
            4 => {
                let (id, name, ..) = state.pop().expect("a product to move");
                ("PUT", path(id), Some(product(&name, 7, 7, "elsewhere")))
            }
            // A product of the category deleted (the newest; the first ones stay).
            _ => {
                let (id, ..) = state.pop().expect("a product to delete");
                ("DELETE", path(id), None)
            }
        };
        let mut recorded = history.lock().await;
        let creates = matches!(round % 6, 2 | 3);
        if !creates {
            recorded.push(state.clone());
            drop(recorded);
            let (status, answer) = s.send(method, &target, body).await;
            assert!(status == 200 || status == 204, "write {round}: {status} {answer}");
        } else {
            // A new product's id is only known from the answer: readers check their pages once the
            // answer is in (they wait for the lock held across the request).
            let (status, answer) = s.send(method, &target, body).await;
            assert_eq!(status, 201, "write {round}: {answer}");
            state.push((answer["id"].as_u64().expect("id"), format!("new {round}"), 7, 7));
            state.sort();
            recorded.push(state.clone());
            drop(recorded);
        }
        acked.store(round, Ordering::Release);
        // The writer's own next read shows its write exactly (no other write is in flight).
        let (got, _) = page(&s).await;
        assert_eq!(got, state, "the page right after write {round} was acknowledged");
        // Readers keep reading between writes, so some pages are answered from the cache.
        let before = reads.load(Ordering::Relaxed);
        while reads.load(Ordering::Relaxed) < before + READERS && !readers.iter().any(|r| r.is_finished()) {
            tokio::task::yield_now().await;
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.await.expect("reader");
    }
    assert!(hits.load(Ordering::Relaxed) > 0, "no page was ever answered from the cache ({} reads)", reads.load(Ordering::Relaxed));
}
