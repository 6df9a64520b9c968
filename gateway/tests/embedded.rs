//! The gateway in embedded mode, over real sockets, around the real API and a real engine.

mod common;

use std::time::Duration;

use common::*;
use kassa_gateway::config::LimitClass;
use serde_json::json;

fn product() -> serde_json::Value {
    json!({"name": "Lamp", "description": "A lamp", "price": 19.99, "stock": 5, "category": "home"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_with_headers_and_serves_again_after_the_wait() {
    let mut cfg = config();
    cfg.rate_limit.api = LimitClass { limit: 2, window_ms: 1000, burst: 2 };
    let node = embedded(cfg);
    let c = client();
    for expected_remaining in ["1", "0"] {
        let r = c.get(node.url("/api/products")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "2");
        assert_eq!(r.headers()["ratelimit-remaining"], expected_remaining);
        assert_eq!(r.headers()["x-ratelimit-remaining"], expected_remaining);
        assert!(r.headers().contains_key("ratelimit-reset") && r.headers().contains_key("x-ratelimit-reset"));
    }
    // A client-chosen identity header does not buy a fresh allowance.
    let r = c.get(node.url("/api/products")).header("x-user-id", "someone-else").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "security headers on rejections too");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Rate limit exceeded");
    assert_eq!(body["message"], "rate limit exceeded; retry after 1 s", "{body}");
    assert!(body["retry_after"].as_f64().is_some_and(|s| s > 0.0), "{body}");
    // Other classes are counted separately; the refusal is counted.
    assert_eq!(c.get(node.url("/health")).send().await.unwrap().status(), 200);
    let text = c.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&parse_metrics(&text), "gateway_rate_limited_total", &[("class", "api")]), Some(1.0), "{text}");
    // A verified user is limited by identity, not by address.
    let token = register(&c, &node, "rl-user", "password-123").await;
    let r = c.get(node.url("/api/products")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "a fresh allowance for a different verified client");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = c.get(node.url("/api/products")).send().await.unwrap();
    assert_eq!(r.status(), 200, "served again after Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_writes_need_an_admin_and_baskets_their_owner() {
    let node = embedded(config());
    let c = client();
    let r = c.post(node.url("/api/products")).json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c.post(node.url("/api/products")).bearer_auth("garbage").json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let alice = register(&c, &node, "alice", "alice-password").await;
    let bob = register(&c, &node, "bob", "bob-password").await;
    let r = c.post(node.url("/api/products")).bearer_auth(&alice).json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let r = c.post(node.url("/api/products")).bearer_auth(&admin).json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // A token from the CLI path (`kassa token`) works the same.
    let cli = kassa_gateway::issue_token(&config(), kassa_gateway::Role::Admin, "ops").unwrap();
    let r = c.post(node.url("/products")).bearer_auth(&cli).json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // Product reads are public.
    assert_eq!(c.get(node.url("/api/products")).send().await.unwrap().status(), 200);
    // Baskets need a token, and only their owner (or an admin) may touch them.
    assert_eq!(c.get(node.url("/api/baskets/alice")).send().await.unwrap().status(), 401);
    let r = c.post(node.url("/api/baskets")).bearer_auth(&alice).json(&json!({"user_id": "alice"})).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(c.get(node.url("/api/baskets/alice")).bearer_auth(&alice).send().await.unwrap().status(), 200);
    assert_eq!(c.get(node.url("/api/baskets/alice")).bearer_auth(&bob).send().await.unwrap().status(), 403);
    let r = c.post(node.url("/api/baskets")).bearer_auth(&bob).json(&json!({"user_id": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(c.get(node.url("/api/baskets/alice")).bearer_auth(&admin).send().await.unwrap().status(), 200);
    // Admin endpoints.
    assert_eq!(c.get(node.url("/admin/status")).bearer_auth(&alice).send().await.unwrap().status(), 403);
    let r = c.get(node.url("/admin/status")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["services"]["product"]["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lifecycle_and_token_revocation() {
    let node = embedded(config());
    let c = client();
    let token = register(&c, &node, "carol", "carol-password").await;
    let r = c.post(node.url("/auth/register")).json(&json!({"username": "carol", "password": "whatever-123"})).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = c.post(node.url("/auth/register")).json(&json!({"username": "dave", "password": "short"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.post(node.url("/auth/login")).json(&json!({"username": "carol", "password": "wrong-password"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let me: serde_json::Value = c.get(node.url("/auth/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["username"].as_str(), me["role"].as_str(), me["is_active"].as_bool()), (Some("carol"), Some("user"), Some(true)));
    assert!(me.get("password_hash").is_none());
    let r = c.put(node.url("/api/v1/users/profile")).bearer_auth(&token).json(&json!({"full_name": "Carol C"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.put(node.url("/auth/me")).bearer_auth(&token).json(&json!({"role": "admin"})).send().await.unwrap();
    assert_eq!(r.status(), 400, "no self-promotion");
    // Refresh: a valid token buys a new one.
    let r = c.post(node.url("/auth/refresh")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let refreshed: serde_json::Value = r.json().await.unwrap();
    assert!(refreshed["token"].as_str().is_some());
    // Admin deactivates: the user's existing token stops working at once.
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let r = c.put(node.url("/admin/users/carol")).bearer_auth(&admin).json(&json!({"is_active": false})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(node.url("/auth/me")).bearer_auth(&token).send().await.unwrap().status(), 401);
    let r = c.post(node.url("/auth/login")).json(&json!({"username": "carol", "password": "carol-password"})).send().await.unwrap();
    assert_eq!(r.status(), 403, "deactivated users cannot log in");
    let r =
        c.put(node.url("/admin/users/carol")).bearer_auth(&admin).json(&json!({"is_active": true, "role": "admin"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The stored role wins over the token's: the old "user" token now acts as admin; demote again later.
    assert_eq!(c.get(node.url("/admin/users")).bearer_auth(&token).send().await.unwrap().status(), 200);
    let list: serde_json::Value = c.get(node.url("/admin/users?limit=10")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["total"], 2);
    // Password change revokes older tokens (after the second boundary) and returns a fresh one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c
        .post(node.url("/auth/change-password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": "carol-password", "new_password": "carol-password-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    assert_eq!(c.get(node.url("/auth/me")).bearer_auth(&token).send().await.unwrap().status(), 401);
    assert_eq!(c.get(node.url("/auth/me")).bearer_auth(&fresh).send().await.unwrap().status(), 200);
    // Deleted users stay refused.
    assert_eq!(c.delete(node.url("/admin/users/carol")).bearer_auth(&admin).send().await.unwrap().status(), 200);
    assert_eq!(c.get(node.url("/api/baskets/carol")).bearer_auth(&fresh).send().await.unwrap().status(), 401);
    assert_eq!(c.get(node.url("/admin/users/carol")).bearer_auth(&admin).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_security_headers_request_ids_and_trace_context() {
    let mut cfg = config();
    cfg.cors.allowed_origins = vec!["https://shop.example".into()];
    cfg.cors.allow_credentials = true;
    let node = embedded(cfg);
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, node.url("/api/products"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "preflight {}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://shop.example");
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let r = c
        .request(reqwest::Method::OPTIONS, node.url("/api/products"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"), "unlisted origin gets no grant");

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c.get(node.url("/api/products")).header("x-request-id", "req-42").header("traceparent", parent).send().await.unwrap();
    let h = r.headers();
    assert_eq!(h["x-request-id"], "req-42");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01") && tp != parent);
    for (name, value) in [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer")] {
        assert_eq!(h[name], value);
    }
    assert!(h.contains_key("content-security-policy"));
    assert!(!h.contains_key("strict-transport-security"), "no HSTS without TLS");
    // Generated ids, and the headers on errors and unknown routes too.
    for path in ["/nope/at/all", "/api/baskets/x"] {
        let r = c.get(node.url(path)).send().await.unwrap();
        assert!(r.status().is_client_error());
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        assert_eq!(r.headers()["x-request-id"].len(), 36, "{path}: a UUID was generated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_and_route_deadline() {
    let mut cfg = config();
    cfg.body_limit_bytes = 1024;
    let node = embedded(cfg);
    let c = client();
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let big = json!({"name": "x".repeat(4096), "price": 1.0, "stock": 1, "category": "c", "description": ""});
    let r = c.post(node.url("/api/products")).bearer_auth(&admin).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = c.post(node.url("/api/products")).bearer_auth(&admin).json(&product()).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_route_templates_and_count_requests() {
    let node = embedded(config());
    let c = client();
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let r = c.post(node.url("/api/products")).bearer_auth(&admin).json(&product()).send().await.unwrap();
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap();
    for _ in 0..3 {
        assert_eq!(c.get(node.url(&format!("/api/products/{id}"))).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.get(node.url("/api/products/999999")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(node.url("/no/such/route/abc123")).send().await.unwrap().status(), 401);
    let r = c.get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let samples = parse_metrics(&text);
    let ok = sample(&samples, "http_requests_total", &[("method", "GET"), ("endpoint", "/api/products/{id}"), ("status", "200")]);
    assert_eq!(ok, Some(3.0), "{text}");
    let nf = sample(&samples, "http_requests_total", &[("method", "GET"), ("endpoint", "/api/products/{id}"), ("status", "404")]);
    assert_eq!(nf, Some(1.0));
    assert_eq!(sample(&samples, "http_requests_total", &[("endpoint", "/api/products"), ("method", "POST"), ("status", "201")]), Some(1.0));
    assert!(sample(&samples, "http_request_duration_seconds_count", &[("endpoint", "/api/products/{id}")]).unwrap() >= 4.0);
    // Never a raw path as a label.
    assert!(!text.contains(&format!("/api/products/{id}\"")), "raw path leaked into labels");
    assert!(!text.contains("abc123"));
    assert!(sample(&samples, "kassa_shard_commands_total", &[("shard", "0")]).unwrap() >= 1.0);
    assert!(sample(&samples, "kassa_shard_durable_lsn", &[("shard", "0")]).unwrap() >= 1.0);
    assert_eq!(sample(&samples, "kassa_engine_open", &[]), Some(1.0));
    assert!(sample(&samples, "kassa_checkpoint_age_seconds", &[]).is_some());
    assert!(sample(&samples, "gateway_rate_limit_clients", &[("class", "api")]).unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_follow_the_engine() {
    let node = embedded(config());
    let c = client();
    for (path, status) in [("/health", "healthy"), ("/health/live", "alive"), ("/health/ready", "ready")] {
        let r = c.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], status);
    }
    let d: serde_json::Value = c.get(node.url("/health/detailed")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["healthy"], true);
    node.engine.shutdown();
    assert_eq!(c.get(node.url("/health/ready")).send().await.unwrap().status(), 503);
    assert_eq!(c.get(node.url("/health/live")).send().await.unwrap().status(), 200);
}

fn with<T>(token: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_carries_the_same_policy_via_metadata() {
    use kassa_api::pb::product::product_service_client::ProductServiceClient;
    use kassa_api::pb::product::{CreateProductRequest, ListProductsRequest};
    let node = embedded(config());
    let c = client();
    let alice = register(&c, &node, "galice", "alice-password").await;
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let mut grpc = ProductServiceClient::connect(node.grpc_url()).await.unwrap();
    let create = || CreateProductRequest { name: "Desk".into(), description: "".into(), price: 10.5, stock: 2, category: "office".into() };
    assert_eq!(grpc.create_product(with(None, create())).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(grpc.create_product(with(Some(&alice), create())).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    grpc.create_product(with(Some(&admin), create())).await.unwrap();
    let list = grpc.list_products(with(None, ListProductsRequest {})).await.unwrap().into_inner();
    assert_eq!(list.products.len(), 1);
    // Payment administration is the gateway's to refuse (the API checks only ownership): a user is
    // denied before the API looks the payment up, which would answer NOT_FOUND.
    {
        use kassa_api::pb::payment::payment_service_client::PaymentServiceClient;
        use kassa_api::pb::payment::{RefundPaymentRequest, UpdatePaymentRequest};
        let mut pay = PaymentServiceClient::connect(node.grpc_url()).await.unwrap();
        let refund = || RefundPaymentRequest { payment_id: "no-such-payment".into(), amount: 0.0, reason: String::new() };
        let update = || UpdatePaymentRequest { payment_id: "no-such-payment".into(), status: "failed".into() };
        assert_eq!(pay.refund_payment(with(Some(&alice), refund())).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(pay.update_payment(with(Some(&alice), update())).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(pay.refund_payment(with(Some(&admin), refund())).await.unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(pay.update_payment(with(Some(&admin), update())).await.unwrap_err().code(), tonic::Code::NotFound);
    }
    let text = c.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = parse_metrics(&text);
    let created = sample(&samples, "grpc_requests_total", &[("method", "/product.ProductService/CreateProduct"), ("code", "0")]);
    assert_eq!(created, Some(1.0), "{text}");
    assert_eq!(sample(&samples, "grpc_requests_total", &[("method", "/product.ProductService/CreateProduct"), ("code", "16")]), Some(1.0));
}

/// Every declared route — the API's table with its `/api/...` aliases and the gateway's own — answers as
/// its declared access says, over real sockets, for no token, a user token and an admin token: refused
/// by the gateway (401 with `WWW-Authenticate`, 403) exactly when the declaration says so, and otherwise
/// reaching a route (never the router's 404/405 fallbacks, for the gateway's own routes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_its_declared_access_says() {
    use kassa_gateway::auth::{Access, GATEWAY_ROUTES, http_routes};
    let node = embedded(config());
    let c = client();
    let user = register(&c, &node, "walker", "walker-password").await;
    let admin = login(&c, &node, "admin", ADMIN_PASSWORD).await;
    let routes = http_routes(node.front.shared.cfg.metrics_public);
    assert!(routes.len() > 150, "{}", routes.len());
    for (method, template, access) in routes {
        // The user's own id where a route names a user, so that ownership never decides here.
        let path = template
            .split('/')
            .map(|s| match s {
                "{user_id}" => "walker",
                s if s.starts_with('{') => "v1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        // `/health/` is the standalone gateway's; embedded, only the API's `/health` answers.
        let own = GATEWAY_ROUTES.iter().any(|(m, p, _)| *m == method && *p == template) && template != "/health/";
        for (who, token, is_admin) in [("no token", None, false), ("user token", Some(&user), false), ("admin token", Some(&admin), true)] {
            let mut req = c.request(method.clone(), node.url(&path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let www = r.headers().get("www-authenticate").cloned();
            let text = r.text().await.unwrap();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let gateway_refusal = body["message"] == "authentication required" || body["message"] == "admin role required";
            let label = format!("{method} {template} with {who}: {status} {text}");
            match (access, token.is_some(), is_admin) {
                (Access::User | Access::Admin, false, _) => {
                    assert_eq!((status, www.as_ref().map(|v| v.to_str().unwrap())), (401, Some("Bearer")), "{label}");
                    assert_eq!(
                        (body["error"].as_str(), body["message"].as_str()),
                        (Some("authentication required"), Some("authentication required")),
                        "{label}"
                    );
                }
                (Access::Admin, true, false) => {
                    assert_eq!(
                        (status, body["error"].as_str(), body["message"].as_str()),
                        (403, Some("admin role required"), Some("admin role required")),
                        "{label}"
                    );
                }
                _ => {
                    assert!(!gateway_refusal, "{label}");
                    let fallback = status == 405 || body["message"].as_str().is_some_and(|m| m.starts_with("no route for"));
                    assert!(!(own && fallback), "{label}: the gateway serves its declared route");
                }
            }
        }
    }
}
