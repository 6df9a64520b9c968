//! TLS termination on the real listeners: a client that trusts the certificate gets real answers over
//! HTTPS, with HSTS; ALPN offers HTTP/2 (what gRPC needs); a plain-text client gets nothing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use kassa_gateway::{Listeners, RouterFactory, TlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_hsts_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, certified.cert.pem()).unwrap();
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();

    let mut cfg = common::config();
    cfg.tls = Some(TlsConfig { cert_file, key_file });
    let tls = cfg.load_tls().unwrap().expect("tls configured");
    let node = common::embedded(cfg);
    let router = node.front.http.clone();
    let factory: RouterFactory = Arc::new(move || router.clone());
    let https = Listeners::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), 1, factory, Some(tls)).unwrap();
    let port = https.local_addr().port();

    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(root).resolve("localhost", https.local_addr()).build().unwrap();
    let r = client.get(format!("https://localhost:{port}/products/1")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiated h2");
    assert_eq!(r.status(), 404, "a real answer from the API (empty catalog)");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
    let r = client.get(format!("https://localhost:{port}/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health/live")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A broken key file is a clear start-up error, not a panic.
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let err = kassa_gateway::load_tls(&dir.path().join("cert.pem"), &dir.path().join("bad.pem")).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    https.shutdown(std::time::Duration::from_secs(1));
}
