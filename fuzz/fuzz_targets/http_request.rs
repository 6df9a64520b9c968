//! Every HTTP route of the API (and its gateway alias), with fuzzed path parameters, query and body,
//! through the real router on a real engine: every answer is a clear status — never a 5xx other than a
//! 503 (overload), never a panic — whatever the bytes.
#![no_main]

#[path = "shared_node.rs"]
mod shared_node;

use std::sync::OnceLock;

use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use kassa_api::{Actor, ApiConfig, Router, http_router};
use libfuzzer_sys::{arbitrary, fuzz_target};
use shared_node::{encode, node};
use tower::ServiceExt;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    route: u16,
    params: Vec<String>,
    query: String,
    /// 0: no caller (auth off), 1: the user `ana`, 2: an administrator.
    caller: u8,
    json: bool,
    idempotency_key: Option<String>,
    body: Vec<u8>,
}

struct App {
    router: Router,
    routes: Vec<(Method, String)>,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| App {
        router: http_router(node().engine.clone(), ApiConfig::default()),
        routes: kassa_api::http::all_routes().into_iter().map(|(m, p, _)| (m, p)).collect(),
    })
}

fn path(template: &str, params: &[String]) -> String {
    let mut next = params.iter();
    template
        .split('/')
        .map(|segment| match segment.starts_with('{') {
            true => encode(next.next().map_or("1", String::as_str), &[]),
            false => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fuzz_target!(|input: Input| {
    let app = app();
    let (method, template) = &app.routes[usize::from(input.route) % app.routes.len()];
    let mut uri = path(template, &input.params);
    if !input.query.is_empty() {
        uri = format!("{uri}?{}", encode(&input.query, b"=&"));
    }
    let mut request = Request::builder().method(method.clone()).uri(&uri);
    if input.json {
        request = request.header("content-type", "application/json");
    }
    if let Some(key) = input.idempotency_key.as_deref().and_then(|k| http::HeaderValue::from_str(k).ok()) {
        request = request.header("idempotency-key", key);
    }
    let Ok(mut request) = request.body(Body::from(input.body)) else { return };
    match input.caller % 3 {
        1 => drop(request.extensions_mut().insert(Actor { subject: "ana".into(), admin: false })),
        2 => drop(request.extensions_mut().insert(Actor { subject: "root".into(), admin: true })),
        _ => {}
    }
    let (status, body) = node().runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.expect("the router always answers");
        let status = response.status();
        (status, response.into_body().collect().await.expect("a body").to_bytes())
    });
    assert!(
        !status.is_server_error() || status == http::StatusCode::SERVICE_UNAVAILABLE,
        "{method} {uri}: {status} {}",
        String::from_utf8_lossy(&body)
    );
});
