//! A request whose protobuf does not decode is the caller's error: INVALID_ARGUMENT with the reason,
//! on every service, and nothing changes (found by the `grpc_request` fuzz target, where tonic's own
//! codec answered INTERNAL).

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use kassa_engine::{Engine, EngineConfig};
use tower::ServiceExt;

async fn status_of(app: &axum::Router, path: &str, message: &[u8]) -> (String, String) {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(frame))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let trailers = body.collect().await.unwrap().trailers().cloned().unwrap_or_default();
    let get = |name: &str| {
        let value = parts.headers.get(name).or_else(|| trailers.get(name)).map(|v| v.to_str().unwrap().to_string());
        value.unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test]
async fn an_undecodable_message_is_invalid_argument_on_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path());
    cfg.pin_threads = false;
    let engine = Engine::open(cfg).unwrap();
    let app = kassa_api::grpc_router(engine.clone());
    // Field number 0 is never valid; a length that runs past the end neither.
    for message in [&[0x00, 0x00][..], &[0x0a, 0x05, b'a']] {
        for path in ["/product.ProductService/GetProduct", "/basket.BasketService/DeleteBasket", "/payment.PaymentService/CreatePayment"] {
            let (code, text) = status_of(&app, path, message).await;
            assert_eq!(code, "3", "{path} {message:?}: {text}");
            assert!(text.contains("not%20a%20valid%20message") || text.contains("not a valid message"), "{path}: {text}");
        }
    }
    // A valid message still reaches its handler.
    let (code, _) = status_of(&app, "/product.ProductService/GetProduct", &[0x08, 0x01]).await;
    assert_eq!(code, "5", "product 1 does not exist in an empty catalog");
    engine.shutdown();
}
