//! Keyset paging of product listings over real HTTP: walking `after=<next_after>` yields the listing's
//! order exactly once, stays put when earlier rows go away, and bad cursors are 400s.

mod common;

use common::Server;
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<u64> {
    page["products"].as_array().expect("products").iter().map(|p| p["id"].as_u64().expect("id")).collect()
}

/// Every id of a listing, page by page through `next_after`; also checks each page's shape.
async fn walk(s: &Server, path: &str, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let url = match &after {
            Some(a) => format!("{path}?limit={limit}&after={a}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = s.get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let got = ids(&page);
        assert_eq!(page["count"].as_u64(), Some(got.len() as u64));
        out.extend(&got);
        match page["next_after"].as_str() {
            Some(next) => {
                assert_eq!(got.len(), limit, "only a full page names a next one: {page}");
                after = Some(next.to_string());
            }
            None => {
                assert!(got.len() < limit, "a full page names the next one: {page}");
                return out;
            }
        }
    }
    panic!("{path}: the walk never ended");
}

/// The whole listing in one offset page.
async fn whole(s: &Server, path: &str) -> Vec<u64> {
    let (status, page) = s.get(&format!("{path}?limit=1000")).await;
    assert_eq!(status, 200);
    ids(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_walk_each_listing_once_in_order() {
    let s = Server::start();
    // Prices with ties, so that the price order's tie-break by id is exercised.
    for i in 0..23u64 {
        let body = json!({"name": format!("Keyset {i}"), "price": 10 + (i % 5), "stock": i % 4, "category": "keyset"});
        let (status, created) = s.send("POST", "/api/products", Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }
    for (path, limit) in [
        ("/api/products", 4),
        ("/api/products/category/keyset", 5),
        ("/api/products/category/keyset", 23),
        ("/api/products/price/10/13", 3),
        ("/api/products/search/keyset", 6),
        ("/api/products/stock/2", 2),
        ("/api/products/low-stock-1", 4),
    ] {
        let walked = walk(&s, path, limit).await;
        let expected = whole(&s, path).await;
        assert!(!expected.is_empty(), "{path}");
        assert_eq!(walked, expected, "{path} by {limit}: the keyset walk is the listing, each product once");
    }

    // A keyset page does not move when rows before it go away (an offset page would shift).
    let (_, first) = s.get("/api/products/category/keyset?limit=5").await;
    let cursor = first["next_after"].as_str().expect("a full first page").to_string();
    let (_, second) = s.get(&format!("/api/products/category/keyset?limit=5&after={cursor}")).await;
    let gone = ids(&first)[0];
    let (status, _) = s.send("DELETE", &format!("/api/products/{gone}"), None).await;
    assert_eq!(status, 200);
    let (_, again) = s.get(&format!("/api/products/category/keyset?limit=5&after={cursor}")).await;
    assert_eq!(ids(&again), ids(&second), "same page after an earlier product was deleted");
    let (_, by_offset) = s.get("/api/products/category/keyset?limit=5&offset=5").await;
    assert_ne!(ids(&by_offset), ids(&second), "while the offset page shifted by one");

    // Bad cursors, and cursors where there is no keyset paging, change nothing and are 400s.
    for bad in ["abc", "1.5", "1:", ":1", "1:-2", "99999999999999999999999999999999999999999:1", &"1".repeat(70)] {
        let (status, body) = s.get(&format!("/api/products?after={bad}")).await;
        assert_eq!(status, 400, "after={bad}: {body}");
    }
    let (status, body) = s.get("/api/payments?after=0:1").await;
    assert_eq!(status, 400, "{body}");
}
