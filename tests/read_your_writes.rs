//! An acknowledged write is visible to the very next read, through every read path (point reads,
//! index listings, baskets), while many clients write and read at once and the stores' write buffers
//! are moved into the stores underneath them.

mod common;

use common::Server;
use serde_json::json;

const CLIENTS: usize = 12;
const ROUNDS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_is_read_back_under_concurrent_load() {
    let s = std::sync::Arc::new(Server::start());
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let s = s.clone();
        clients.push(tokio::spawn(async move {
            let category = format!("ryw-{c}");
            let (status, created) = s
                .send("POST", "/products", Some(json!({"name": format!("P{c}"), "price": 1, "stock": 1_000_000, "category": category})))
                .await;
            assert_eq!(status, 201, "{created}");
            let id = created["id"].as_u64().expect("id");
            let user = format!("ryw-user-{c}");
            for round in 1..=ROUNDS {
                // A product write, then its point read and its category listing.
                let price = round * 100 + c as u64;
                let update = json!({"name": format!("P{c}"), "price": price, "stock": 1_000_000, "category": category});
                let (status, body) = s.send("PUT", &format!("/api/products/{id}"), Some(update)).await;
                assert_eq!(status, 200, "{body}");
                let (status, got) = s.get(&format!("/api/products/{id}")).await;
                assert_eq!((status, got["price"].as_u64()), (200, Some(price)), "point read after acknowledged update, round {round}");
                let (status, listed) = s.get(&format!("/api/products/category/{category}")).await;
                assert_eq!(status, 200);
                let prices: Vec<_> = listed["products"].as_array().expect("products").iter().map(|p| p["price"].as_u64()).collect();
                assert_eq!(prices, [Some(price)], "category listing after acknowledged update, round {round}: {listed}");

                // A basket write, then the basket.
                let (status, body) =
                    s.send("POST", &format!("/api/baskets/{user}/items"), Some(json!({"product_id": id, "quantity": 1}))).await;
                assert_eq!(status, 200, "{body}");
                let (status, items) = s.get(&format!("/api/baskets/{user}/items")).await;
                assert_eq!(status, 200);
                let quantity =
                    items.as_array().expect("items").iter().find(|i| i["product_id"].as_u64() == Some(id)).map(|i| i["quantity"].clone());
                assert_eq!(quantity, Some(json!(round)), "basket read after acknowledged add, round {round}: {items}");
            }
            (id, user, ROUNDS * 100 + c as u64)
        }));
    }
    let mut finals = Vec::new();
    for client in clients {
        finals.push(client.await.expect("client"));
    }

    // Once the projector has moved every buffered write into the stores, the same reads come from the
    // stores themselves and still say the same.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, metrics) = s.raw("GET", "/metrics", Vec::new(), &[]).await;
        let buffered: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("kassa_shard_store_buffered_entries{"))
            .map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("gauge value"))
            .collect();
        assert_eq!(buffered.len(), 2, "one gauge per shard: {metrics}");
        if buffered.iter().all(|&b| b == 0.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "buffered writes never reached the stores: {buffered:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (id, user, price) in finals {
        let (_, got) = s.get(&format!("/api/products/{id}")).await;
        assert_eq!(got["price"].as_u64(), Some(price));
        let (_, items) = s.get(&format!("/api/baskets/{user}/items")).await;
        assert_eq!(items[0]["quantity"], json!(ROUNDS), "{items}");
    }
}
