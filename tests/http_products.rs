//! Product endpoints over real HTTP against the real binary (contract §2.1), success and error paths.

mod common;

use common::{Server, assert_key_order};
use serde_json::json;

const PRODUCT_KEYS: &[&str] = &["id", "name", "description", "price", "stock", "category", "created_at", "updated_at", "reserved", "sold"];

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v["products"].as_array().expect("products array").iter().map(|p| p["id"].as_u64().expect("id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_endpoints() {
    let s = Server::start();

    // Reads over the seed catalog, at the service path and the gateway path.
    for prefix in ["", "/api"] {
        let (status, body, text) = s.call("GET", &format!("{prefix}/products/8"), None).await;
        assert_eq!(status, 200);
        assert_key_order(&text, PRODUCT_KEYS);
        assert_eq!(body["price"], json!(89.99));
        assert_eq!(body["stock"], 5);
        assert!(text.contains(r#""Home \u0026 Kitchen""#), "HTML-escaped like Go: {text}");
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let (status, body, text) = s.call("GET", "/products", None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["products", "count"]);
    assert_eq!(body["count"], 10);
    assert_eq!(ids(&body), (1..=10).collect::<Vec<_>>());
    let (_, body) = s.get("/products?limit=3&offset=2").await;
    assert_eq!(ids(&body), vec![3, 4, 5]);
    assert_eq!(body["count"], 3);
    for bad in ["/products?limit=0", "/products?limit=abc", "/products?limit=1001", "/products?offset=-1"] {
        let (status, body) = s.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "Bad Request");
    }

    let (status, body) = s.get("/products/abc").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid product ID", "message": "Product ID must be a valid number"})));
    let (status, body) = s.get("/products/999").await;
    assert_eq!((status, body), (404, json!({"error": "Not Found", "message": "product not found: product not found"})));

    let (status, body) = s.get("/products/top-5").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body), vec![1, 2, 3, 5, 4]);
    let (_, body) = s.get("/api/products/top-10").await;
    assert_eq!(body["count"], 10);
    assert_eq!(body["products"][9]["id"], 6);
    let (_, body) = s.get("/products/low-stock-1").await;
    assert_eq!(body, json!({"products": [], "count": 0}));
    let (_, body) = s.get("/products/low-stock-10").await;
    assert_eq!(ids(&body), vec![8, 1]);
    let (_, body) = s.get("/products/category/Books").await;
    assert_eq!(ids(&body), vec![6, 7]);
    let (_, body) = s.get("/products/category/Home%20%26%20Kitchen").await;
    assert_eq!(ids(&body), vec![8]);
    let (_, body) = s.get("/products/category/Nothing").await;
    assert_eq!(body, json!({"products": [], "count": 0}));
    let (_, body) = s.get("/products/price/10/20").await;
    assert_eq!(ids(&body), vec![6, 7]);
    let (_, body) = s.get("/products/price/45/150.00").await;
    assert_eq!(ids(&body), vec![10, 9, 8, 4], "inclusive, by price");
    let (status, body) = s.get("/products/price/abc/20").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid min price", "message": "Min price must be a valid number"})));
    let (status, body) = s.get("/products/price/1/1e3").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid max price", "message": "Max price must be a valid number"})));
    let (_, body) = s.get("/products/search/PRO").await;
    assert_eq!(ids(&body), vec![1, 2]);
    let (_, body) = s.get("/products/stock/5").await;
    assert_eq!(ids(&body), vec![8]);
    let (status, body) = s.get("/products/stock/many").await;
    assert_eq!((status, body), (400, json!({"error": "Invalid stock", "message": "Stock must be a valid number"})));
    let (status, body) = s.get("/products/random/3").await;
    assert_eq!(status, 200);
    let mut picked = ids(&body);
    picked.dedup();
    assert_eq!(picked.len(), 3);
    for (path, message) in [
        ("/products/random/0", "Count must be between 1 and 50"),
        ("/products/random/51", "Count must be between 1 and 50"),
        ("/products/random/x", "Count must be a valid number"),
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!((status, body), (400, json!({"error": "Invalid count", "message": message})), "{path}");
    }
    let (_, body) = s.get("/products/created/2000-01-01/2100-01-01T00:00:00Z").await;
    assert_eq!(body["count"], 10);
    let (_, body) = s.get("/products/created/2099-01-01/2100-01-01").await;
    assert_eq!(body["count"], 0);
    let (status, body) = s.get("/products/created/yesterday/2100-01-01").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "Bad Request");

    let (status, body, text) = s.call("GET", "/products/stats", None).await;
    assert_eq!(status, 200);
    assert_key_order(
        &text,
        &["total_products", "total_categories", "average_price", "total_value", "low_stock_products", "out_of_stock_products"],
    );
    assert_eq!(
        body,
        json!({"total_products": 10, "total_categories": 5, "average_price": 447.29, "total_value": 75172.5, "low_stock_products": 2, "out_of_stock_products": 0})
    );
    let (status, body, text) = s.call("GET", "/products/categories", None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["categories", "count"]);
    assert_eq!(body["count"], 5);
    assert_eq!(body["categories"][0], json!({"name": "Books", "product_count": 2, "average_price": 13.99}));
    assert_eq!(body["categories"][2], json!({"name": "Electronics", "product_count": 4, "average_price": 994.99}));

    // Writes.
    let widget = json!({"name": "Widget", "description": "A widget", "price": 29.99, "stock": 7, "category": "Tools"});
    let (status, created, text) = s.call("POST", "/products", Some(widget)).await;
    assert_eq!(status, 201, "{created}");
    assert_key_order(&text, PRODUCT_KEYS);
    assert_eq!(created["price"], json!(29.99));
    assert!(text.contains(r#""price":29.99,"#), "exact decimal on the wire: {text}");
    assert_eq!((created["stock"].as_i64(), created["reserved"].as_i64(), created["sold"].as_i64()), (Some(7), Some(0), Some(0)));
    let id = created["id"].as_u64().unwrap();
    let (status, got) = s.get(&format!("/api/products/{id}")).await;
    assert_eq!((status, &got), (200, &created));

    let bad_bodies = [
        json!({"name": "X", "price": 1.999}),
        json!({"name": "X", "price": "29.99"}),
        json!({"name": "X"}),
        json!({"price": 1}),
        json!({"name": "", "price": 1}),
        json!({"name": "X", "price": 1, "stock": -1}),
        json!({"name": "X", "price": -1}),
        json!({"name": "X", "price": 1, "stock": 1.5}),
        json!({"name": "X", "price": 1e300}),
    ];
    let (status, text) = s
        .raw("POST", "/products", br#"{"name":"X","price":100000000000000000000}"#.to_vec(), &[("content-type", "application/json")])
        .await;
    assert_eq!(status, 400, "{text}");
    for b in bad_bodies {
        let (status, body) = s.send("POST", "/products", Some(b.clone())).await;
        assert_eq!(status, 400, "{b} -> {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    let (status, body) = s.send("POST", "/products", None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid request body")));

    let update = json!({"name": "Widget 2", "price": 150, "stock": 3, "category": "Tools"});
    let (status, updated) = s.send("PUT", &format!("/products/{id}"), Some(update.clone())).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["price"].clone(), updated["description"].as_str()),
        (Some("Widget 2"), json!(150), Some(""))
    );
    assert_eq!(updated["created_at"], created["created_at"], "created_at preserved");
    let (status, body) = s.send("PUT", &format!("/products/{id}"), Some(json!({"id": id + 1, "name": "Y", "price": 1}))).await;
    assert_eq!(status, 400, "body id must match the path: {body}");
    let (status, body) = s.send("PUT", "/products/999", Some(update)).await;
    assert_eq!((status, body), (404, json!({"error": "Not Found", "message": "product not found: product not found"})));
    let (status, body) = s.send("DELETE", &format!("/api/products/{id}"), None).await;
    assert_eq!((status, body), (200, json!({"message": "Product deleted successfully"})));
    let (status, body) = s.send("DELETE", &format!("/products/{id}"), None).await;
    assert_eq!((status, body), (404, json!({"error": "Not Found", "message": "failed to delete product: product not found"})));
    let (status, _) = s.send("DELETE", "/products/zero", None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_routes_and_fallbacks() {
    let s = Server::start();
    let (status, body, text) = s.call("GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_key_order(&text, &["service", "status", "timestamp", "version"]);
    let ts = body["timestamp"].as_str().unwrap();
    assert!(ts.len() == 20 && ts.ends_with('Z'), "no fraction: {ts}");
    let (status, body) = s.get("/api/v1/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("healthy")));
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/products/{id}"]["get"].is_object());
    assert!(doc["paths"]["/api/notifications/{id}/read"]["post"].is_object());

    let (status, body) = s.get("/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
    let (status, body) = s.get("/api/product").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
    let (status, body) = s.send("PATCH", "/products/1", None).await;
    assert_eq!((status, body["error"].as_str()), (405, Some("Method Not Allowed")));
}
