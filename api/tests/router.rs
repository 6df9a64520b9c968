//! In-process checks of the HTTP router: the OpenAPI document and the router agree route for route, and
//! the declared access plus the one ownership rule hold when a policy layer (as the gateway's) supplies an
//! `Actor`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use kassa_api::access::{self, HttpPolicy, Verdict};
use kassa_api::{Actor, ApiConfig, http_router};
use kassa_engine::{Engine, EngineConfig, ProductInput, cmd};
use serde_json::{Value, json};
use tower::ServiceExt;

fn engine(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir);
    cfg.shards = 2;
    cfg.pin_threads = false;
    cfg.cache_bytes = 16 << 20;
    let engine = Engine::open(cfg).expect("engine opens");
    let input = ProductInput {
        name: "Pen".into(),
        description: String::new(),
        price: 150,
        stock: 10,
        category: "Office".into(),
        image_url: String::new(),
    };
    engine.run_blocking(cmd::create_product_with_id(1, input)).expect("product");
    engine
}

async fn call(app: &Router, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn openapi_document_and_router_agree() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let app = http_router(engine.clone(), ApiConfig::default());
    let doc = serde_json::to_value(kassa_api::http::openapi::document(&ApiConfig::default(), engine.currency())).unwrap();
    let paths = doc["paths"].as_object().unwrap();

    let mut from_routes: Vec<(String, String)> =
        kassa_api::http::all_routes().into_iter().map(|(m, p, _)| (m.as_str().to_lowercase(), p)).collect();
    from_routes.sort();
    let mut from_doc: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    from_doc.sort();
    assert_eq!(from_routes, from_doc, "the document describes exactly the routes the router serves");
    assert!(from_routes.len() > 120, "every service route plus its gateway alias: {}", from_routes.len());

    // Every documented operation reaches a handler (not the 404/405 fallbacks), and every path
    // parameter of the document appears in the path.
    for (method, path) in &from_routes {
        let concrete = path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/");
        let (status, body) = call(&app, method.to_uppercase().parse().unwrap(), &concrete, None).await;
        let fallback = status == StatusCode::METHOD_NOT_ALLOWED || body["message"].as_str().is_some_and(|m| m.starts_with("no route for"));
        assert!(!fallback, "{method} {path} is documented but not routed ({status}: {body})");
        assert!(status.as_u16() < 500, "{method} {concrete}: {status} {body}");
        let op = &paths[path][method];
        for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
            assert!(path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())), "{path}: {p}");
        }
        assert!(op["responses"]["400"].is_object() || op["parameters"].is_null(), "{method} {path} documents bad input");
        assert!(op["responses"]["500"].is_object(), "{method} {path} documents its error envelope");
    }
    let (status, served) = call(&app, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["paths"].as_object().unwrap().len(), paths.len());
    engine.shutdown();
}

/// The API as the gateway serves it with auth on: each route's declared access decided for the caller
/// (401/403), then the caller handed to the API as its `Actor`.
fn behind_policy(engine: &Engine, actor: Actor) -> Router {
    let policy = Arc::new(HttpPolicy::api());
    let layer = axum::middleware::from_fn(move |mut req: Request<Body>, next: Next| {
        let (policy, actor) = (policy.clone(), actor.clone());
        async move {
            let access = policy.lookup(req.method(), req.uri().path()).unwrap_or(access::UNDECLARED);
            match access.decide(access::Caller::of(Some(&actor))) {
                Verdict::Allowed => {}
                Verdict::Unauthenticated => return StatusCode::UNAUTHORIZED.into_response(),
                Verdict::Forbidden => return StatusCode::FORBIDDEN.into_response(),
            }
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
    });
    http_router(engine.clone(), ApiConfig::default()).layer(layer)
}

#[tokio::test]
async fn actors_touch_only_their_own_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let open = http_router(engine.clone(), ApiConfig::default());
    let as_user = |subject: &str, admin: bool| behind_policy(&engine, Actor { subject: subject.into(), admin });
    let (u1, u2, admin) = (as_user("u1", false), as_user("u2", false), as_user("root", true));

    // Catalog writes need an administrator.
    let widget = json!({"name": "W", "price": 1, "stock": 1});
    assert_eq!(call(&u1, Method::POST, "/products", Some(widget.clone())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u1, Method::DELETE, "/products/1", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&admin, Method::POST, "/products", Some(widget)).await.0, StatusCode::CREATED);
    assert_eq!(call(&u1, Method::GET, "/products/1", None).await.0, StatusCode::OK, "reads are public");

    // Baskets.
    assert_eq!(call(&u1, Method::POST, "/baskets/u1/items", Some(json!({"product_id": 1, "quantity": 1}))).await.0, StatusCode::OK);
    assert_eq!(call(&u2, Method::GET, "/baskets/u1", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u2, Method::POST, "/baskets", Some(json!({"user_id": "u1"}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u2, Method::DELETE, "/baskets/u1", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&admin, Method::GET, "/baskets/u1", None).await.0, StatusCode::OK);

    // Payments: ownership is checked after loading.
    assert_eq!(
        call(&u2, Method::POST, "/payments", Some(json!({"user_id": "u1", "method": "paypal", "provider": "p"}))).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, payment) = call(&u1, Method::POST, "/payments", Some(json!({"user_id": "u1", "method": "paypal", "provider": "p"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    let id = payment["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/payments/{id}")),
        (Method::POST, format!("/payments/{id}/cancel")),
        (Method::GET, format!("/payments/{id}/items")),
        (Method::GET, "/payments/user/u1".to_string()),
    ] {
        let (status, body) = call(&u2, method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "Forbidden");
    }
    for path in ["/payments/analytics", "/payments/summary", "/payments/status/pending", "/payments"] {
        assert_eq!(call(&u1, Method::GET, path, None).await.0, StatusCode::FORBIDDEN, "{path} is an admin report");
        assert_eq!(call(&admin, Method::GET, path, None).await.0, StatusCode::OK, "{path}");
    }
    assert_eq!(call(&u1, Method::POST, &format!("/payments/{id}/refund"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u1, Method::GET, &format!("/payments/{id}"), None).await.0, StatusCode::OK);

    // Notifications.
    let note = json!({"user_id": "u1", "title": "t", "message": "m", "type": "info", "channel": "email"});
    assert_eq!(call(&u2, Method::POST, "/api/v1/notifications", Some(note.clone())).await.0, StatusCode::FORBIDDEN);
    let (status, created) = call(&u1, Method::POST, "/api/v1/notifications", Some(note)).await;
    assert_eq!(status, StatusCode::CREATED);
    let nid = created["notification"]["id"].as_str().unwrap();
    let (status, body) = call(&u2, Method::GET, &format!("/api/v1/notifications/{nid}"), None).await;
    let text = "this resource belongs to another user";
    assert_eq!((status, body), (StatusCode::FORBIDDEN, json!({"error": text, "message": text})));
    assert_eq!(call(&u2, Method::GET, "/api/v1/notifications?user_id=u1", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u1, Method::POST, "/api/v1/notifications/cleanup", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&u1, Method::GET, "/api/v1/notifications?user_id=u1", None).await.0, StatusCode::OK);

    // Without an actor (auth off) everything is allowed.
    assert_eq!(call(&open, Method::GET, "/baskets/u1", None).await.0, StatusCode::OK);
    assert_eq!(call(&open, Method::GET, "/payments/analytics", None).await.0, StatusCode::OK);
    engine.shutdown();
}
