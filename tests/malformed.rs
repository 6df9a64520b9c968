//! A corpus of malformed requests fed to every route of the API (taken from the router's own route
//! table): each gets a clear 4xx, never a 5xx, nothing changes, and the server stays up.

mod common;

use common::Server;
use serde_json::json;

/// Everything observable, as raw text: a change anywhere shows up as a difference.
async fn snapshot(s: &Server) -> Vec<String> {
    let mut out = Vec::new();
    for path in [
        "/products?limit=1000",
        "/payments?limit=1000",
        "/baskets/corpus",
        "/api/v1/notifications?user_id=corpus&limit=1000",
        "/api/v1/notifications?user_id=x&limit=1000",
        "/payments/user/x",
        "/baskets/x",
        "/payment-methods?user_id=corpus",
    ] {
        let (status, text) = s.raw("GET", path, Vec::new(), &[]).await;
        out.push(format!("{path} {status} {text}"));
    }
    out
}

fn fill(path: &str, value: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') && seg.ends_with('}') { value.to_string() } else { seg.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

fn good(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{id}" | "{product_id}" => "1".to_string(),
            "{user_id}" => "corpus".to_string(),
            s if s.starts_with('{') => "x".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_change_nothing() {
    let s = Server::start();
    // Some state to protect.
    s.send("POST", "/baskets/corpus/items", Some(json!({"product_id": 6, "quantity": 1}))).await;
    s.send("POST", "/baskets/x/items", Some(json!({"product_id": 7, "quantity": 1}))).await;
    let (status, _) = s.send("POST", "/payments", Some(json!({"user_id": "x", "method": "paypal", "provider": "paypal"}))).await;
    assert_eq!(status, 201);
    s.send(
        "POST",
        "/api/v1/notifications",
        Some(json!({"user_id": "corpus", "title": "t", "message": "m", "type": "info", "channel": "email"})),
    )
    .await;
    let card = json!({"user_id": "corpus", "type": "credit_card", "provider": "simulated", "token": "tok_visa"});
    assert_eq!(s.send("POST", "/payment-methods", Some(card)).await.0, 201);
    let before = snapshot(&s).await;

    let long = "a".repeat(1000);
    let bad_params = ["%FF%FE", "%00", long.as_str(), "%C3%28"];
    let mut deep = "[".repeat(10_000);
    deep.push_str(&"]".repeat(10_000));
    let bad_bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[]".to_vec(),
        b"\"text\"".to_vec(),
        b"null".to_vec(),
        b"42".to_vec(),
        b"{\"name\": \"\xff\xfe\", \"user_id\": \"\xff\"}".to_vec(),
        deep.into_bytes(),
        br#"{"name":7,"price":"x","stock":"many","user_id":5,"product_id":-1,"quantity":"a","status":9,"title":[],"user_ids":"x","amount":"1","metadata":[1]}"#.to_vec(),
        br#"{"price":1e400,"quantity":1e400,"product_id":1e400,"amount":1e400}"#.to_vec(),
        br#"{"price":29.999,"quantity":99999999999,"product_id":99999999999999999999,"amount":0.001,"stock":-5}"#.to_vec(),
        vec![b' '; 70 * 1024],
    ];
    let bad_queries = ["limit=-5", "limit=abc&offset=x", "limit=999999", "offset=100000000"];
    let mut checked = 0;
    let mut failures = Vec::new();
    for (method, path, route) in kassa_api::http::all_routes() {
        let method = method.as_str();
        let expect_4xx = |status: u16, what: &str, failures: &mut Vec<String>| {
            if !(400..500).contains(&status) {
                failures.push(format!("{method} {path} {what}: got {status}"));
            }
        };
        if path.contains('{') {
            for v in bad_params {
                let p = fill(&path, v);
                let (status, _) = s.raw(method, &p, b"{}".to_vec(), &[("content-type", "application/json")]).await;
                expect_4xx(status, &format!("param {}", &v[..v.len().min(12)]), &mut failures);
                checked += 1;
            }
        }
        if route.request.is_some() {
            for body in &bad_bodies {
                let (status, _) = s.raw(method, &good(&path), body.clone(), &[("content-type", "application/json")]).await;
                expect_4xx(status, &format!("body {:?}", String::from_utf8_lossy(&body[..body.len().min(16)])), &mut failures);
                checked += 1;
            }
            let (status, _) =
                s.raw(method, &good(&path), b"{}".to_vec(), &[("content-type", "application/json"), ("Idempotency-Key", "bad key")]).await;
            expect_4xx(status, "idempotency key", &mut failures);
        }
        if route.params.iter().any(|p| p.name == "limit") {
            for q in bad_queries {
                let (status, _) = s.raw(method, &format!("{}?{q}", good(&path)), Vec::new(), &[]).await;
                expect_4xx(status, q, &mut failures);
                checked += 1;
            }
        }
        if method == "GET" {
            // Junk that a GET ignores must still never fail the server.
            let (status, _) = s.raw(method, &format!("{}?limit=1&x=%FF", good(&path)), b"\xff".to_vec(), &[]).await;
            assert!(status < 500, "{method} {path} with junk: {status}");
        }
    }
    assert!(failures.is_empty(), "not refused with a 4xx:\n{}", failures.join("\n"));
    assert!(checked > 300, "the corpus reached every route ({checked} requests)");

    // Transport-level junk.
    let (status, _) = s.raw("POST", "/products", vec![b'x'; 300 * 1024], &[]).await;
    assert_eq!(status, 413);
    // Far larger bodies are cut off at once: a 413 or a closed connection, never a 5xx or an effect.
    let huge = s.client.post(s.url("/products")).body(vec![b'x'; 8 * 1024 * 1024]).send().await;
    if let Ok(r) = huge {
        assert_eq!(r.status().as_u16(), 413);
    }
    let (status, _) = s.raw("GET", &format!("/products/{}", "9".repeat(5000)), Vec::new(), &[]).await;
    assert!((400..500).contains(&status), "huge segment: {status}");

    assert_eq!(snapshot(&s).await, before, "malformed requests changed nothing");
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200, "still alive");
}
