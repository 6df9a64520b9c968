//! Every RPC of the three services (found in their descriptors), with a fuzzed protobuf message and
//! idempotency key, through the real gRPC router on a real engine: every answer is a clear status —
//! never INTERNAL, UNKNOWN or DATA_LOSS, never a panic — whatever the bytes.
#![no_main]

#[path = "shared_node.rs"]
mod shared_node;

use std::sync::OnceLock;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use kassa_api::{Router, grpc_router};
use libfuzzer_sys::{arbitrary, fuzz_target};
use prost::Message;
use shared_node::node;
use tower::ServiceExt;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    method: u8,
    idempotency_key: Option<String>,
    message: Vec<u8>,
}

struct App {
    router: Router,
    methods: Vec<String>,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(kassa_api::pb::FILE_DESCRIPTOR_SET).expect("the descriptors decode");
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| s.method.iter().map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name())))
            })
            .collect();
        assert!(methods.len() >= 20, "every RPC of the three services: {methods:?}");
        App { router: grpc_router(node().engine.clone()), methods }
    })
}

/// gRPC status codes that would mean Kassa failed rather than the input.
const NOT_THE_INPUTS_FAULT: [&str; 3] = ["2", "13", "15"];

fuzz_target!(|input: Input| {
    let app = app();
    let method = &app.methods[usize::from(input.method) % app.methods.len()];
    let mut frame = Vec::with_capacity(5 + input.message.len());
    frame.push(0);
    frame.extend_from_slice(&(input.message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&input.message);
    let mut request =
        Request::builder().method("POST").uri(method.as_str()).header("content-type", "application/grpc").header("te", "trailers");
    if let Some(key) = input.idempotency_key.as_deref().and_then(|k| http::HeaderValue::from_str(k).ok()) {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Body::from(frame)).expect("a request");
    let (code, message) = node().runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.expect("the router always answers");
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.expect("a body");
        // Trailers-only answers carry the status in the headers; the others in the trailers.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = |name: &str| parts.headers.get(name).or_else(|| trailers.get(name)).map(|v| v.to_str().unwrap_or("?").to_string());
        (status("grpc-status").unwrap_or_default(), status("grpc-message").unwrap_or_default())
    });
    assert!(!code.is_empty(), "{method}: an answer without a gRPC status");
    assert!(!NOT_THE_INPUTS_FAULT.contains(&code.as_str()), "{method}: status {code} {message}");
});
