//! The binary starts on ephemeral ports, seeds the catalog, serves HTTP and gRPC, and stops cleanly.

mod common;

use common::Server;
use kassa_api::pb::product::{GetProductRequest, product_service_client::ProductServiceClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_serves_and_stops_cleanly() {
    let server = Server::start();
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    let (status, body) = server.get("/products").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 10, "the seed catalog: {body}");
    let mut grpc = ProductServiceClient::connect(server.grpc.clone()).await.expect("grpc connects");
    let p = grpc.get_product(GetProductRequest { id: 1 }).await.expect("GetProduct").into_inner().product.expect("product");
    assert_eq!(p.name, "MacBook Pro 16-inch");
    assert_eq!(p.price, 2499.99);
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_and_seeding_is_optional() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(dir, &["--seed-catalog", "false"]);
    let (status, body) = server.get("/products").await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(0)));
    let (status, created) = server.send("POST", "/products", Some(serde_json::json!({"name": "Kept", "price": 1.5, "stock": 3}))).await;
    assert_eq!(status, 201, "{created}");
    let dir = server.stop_keep_data();
    let server = Server::start_in(dir, &["--seed-catalog", "false"]);
    let (status, body) = server.get(&format!("/products/{}", created["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Kept");
    assert_eq!(body["price"], 1.5);
}
