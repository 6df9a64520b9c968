//! Walks every operation of `/openapi.json` against a real node (engine in a temp dir, the API behind the
//! gateway with auth on, real sockets) with inputs generated from the document: valid ones (built from
//! the schemas and from data created first) for no token, a user token and an admin token, another
//! user's data, and invalid ones (path and query parameters of the wrong type or out of range, missing
//! required parameters and fields, malformed and wrong-typed JSON, over-long text, bad Idempotency-Key).
//! Every answer's status must be one the document declares for the operation, its body must validate
//! against the declared schema, and every input the document calls invalid must be a 400.
//!
//! Deterministic: the random choices come from a fixed seed (`KASSA_WALK_SEED` picks another), and the
//! number of requests is bounded by construction (checked at the end).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

const SEED: u64 = 0x6b61_7373_615f_7761;
const OWNER: &str = "walker";
const STRANGER: &str = "stranger";
const REQUESTS_MAX: usize = 20_000;
/// Operations whose success needs what the walk cannot make: a payment provider's webhook succeeds
/// only with that provider's signature over the body (tests/stripe_provider.rs shows it does). Their
/// refusals are still walked and checked against the document.
const SUCCEEDS_ELSEWHERE: &[&str] = &["POST /webhooks/{provider}"];

/// A JSON-schema checker for the subset the document uses; an unknown keyword is an error, so that the
/// subset cannot silently grow past what is checked.
struct Checker<'a> {
    doc: &'a Value,
}

const ANNOTATIONS: &[&str] = &["description", "format", "title", "default", "examples", "example", "deprecated", "readOnly", "writeOnly"];

impl Checker<'_> {
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unsupported $ref {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "$ref {r} resolves");
                self.resolve(target)
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let Some(s) = schema.as_object() else {
            errors.push(format!("{at}: schema is not an object: {schema}"));
            return;
        };
        for key in s.keys() {
            let known = [
                "type",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "minimum",
                "maximum",
                "minLength",
                "maxLength",
                "maxProperties",
                "propertyNames",
                "maxItems",
                "oneOf",
                "anyOf",
                "allOf",
            ];
            if !known.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                errors.push(format!("{at}: the checker does not support `{key}`"));
            }
        }
        if let Some(types) = s.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = |t: &str| match t {
                "null" => v.is_null(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "string" => v.is_string(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                _ => false,
            };
            if !types.iter().any(|t| fits(t)) {
                errors.push(format!("{at}: {v} is not of type {types:?}"));
                return;
            }
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array)
            && !values.contains(v)
        {
            errors.push(format!("{at}: {v} is not one of {values:?}"));
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("{at}: {v} < minimum {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("{at}: {v} > maximum {max}"));
            }
        }
        if let Some(text) = v.as_str() {
            let n = text.chars().count() as u64;
            if s.get("minLength").and_then(Value::as_u64).is_some_and(|m| n < m)
                || s.get("maxLength").and_then(Value::as_u64).is_some_and(|m| n > m)
            {
                errors.push(format!("{at}: length {n} outside the bounds of {schema}"));
            }
        }
        if let Some(items) = v.as_array() {
            if s.get("maxItems").and_then(Value::as_u64).is_some_and(|m| items.len() as u64 > m) {
                errors.push(format!("{at}: more than maxItems"));
            }
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    self.check(item, x, &format!("{at}[{i}]"), errors);
                }
            }
        }
        if let Some(object) = v.as_object() {
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !object.contains_key(r) {
                    errors.push(format!("{at}: required `{r}` is missing"));
                }
            }
            if s.get("maxProperties").and_then(Value::as_u64).is_some_and(|m| object.len() as u64 > m) {
                errors.push(format!("{at}: more than maxProperties"));
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, x) in object {
                if let Some(names) = s.get("propertyNames") {
                    self.check(names, &Value::from(k.as_str()), &format!("{at} key {k}"), errors);
                }
                match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                    (Some(p), _) => self.check(p, x, &format!("{at}.{k}"), errors),
                    (None, Some(Value::Bool(false))) => errors.push(format!("{at}: unexpected property `{k}`")),
                    (None, Some(extra)) if extra.is_object() => self.check(extra, x, &format!("{at}.{k}"), errors),
                    (None, _) => {}
                }
            }
        }
        let passes = |sub: &Value| {
            let mut e = Vec::new();
            self.check(sub, v, at, &mut e);
            e.is_empty()
        };
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, v, at, errors);
            }
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array)
            && !any.iter().any(passes)
        {
            errors.push(format!("{at}: {v} matches none of anyOf"));
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let n = one.iter().filter(|sub| passes(sub)).count();
            if n != 1 {
                errors.push(format!("{at}: {v} matches {n} of oneOf"));
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Anonymous,
    User,
    Admin,
}

/// One operation of the document.
struct Op {
    method: reqwest::Method,
    template: String,
    spec: Value,
}

impl Op {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
    fn access(&self) -> &str {
        self.spec["x-kassa-access"].as_str().unwrap_or("?")
    }
    fn params(&self, at: &str) -> Vec<&Value> {
        self.spec["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == at).collect()
    }
    fn success(&self) -> u16 {
        self.spec["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.parse::<u16>().ok())
            .find(|s| *s < 300)
            .expect("a success status")
    }
    fn params_named(&self, name: &str) -> bool {
        self.spec["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == name)
    }
}

/// A request's inputs.
#[derive(Clone, Default)]
struct Input {
    path: BTreeMap<String, String>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    idempotency: Option<String>,
}

struct Walk {
    node: Node,
    client: reqwest::Client,
    doc: Value,
    user: String,
    admin: String,
    rng: StdRng,
    product: i64,
    requests: usize,
    /// Idempotency keys used so far.
    keys: usize,
    failures: Vec<String>,
    /// Operations that answered their success status at least once.
    succeeded: BTreeSet<String>,
    /// (status, operation) pairs seen, for the summary.
    seen: BTreeSet<(u16, String)>,
}

impl Walk {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::User => Some(&self.user),
            Who::Admin => Some(&self.admin),
        }
    }

    async fn raw(
        &mut self,
        method: reqwest::Method,
        path_and_query: &str,
        who: Who,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> (u16, String) {
        self.requests += 1;
        let mut req = self.client.request(method, self.node.url(path_and_query));
        if let Some(t) = self.token(who) {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// A setup call that must succeed; its JSON answer.
    async fn setup(&mut self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let label = format!("setup {method} {path}");
        let body = if body.is_null() { None } else { Some(body.to_string().into_bytes()) };
        let (status, text) = self.raw(method, path, Who::Admin, body, None).await;
        assert!((200..300).contains(&status), "{label}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: {e}: {text}"))
    }

    /// Puts a unit of the walk's product in the user's basket (so that basket reads and checkouts have
    /// something to work on).
    async fn stock_basket(&mut self, user: &str) {
        let product = self.product;
        self.setup(reqwest::Method::POST, &format!("/api/baskets/{user}/items"), json!({"product_id": product, "quantity": 1})).await;
    }

    async fn new_product(&mut self) -> i64 {
        let p = self
            .setup(reqwest::Method::POST, "/api/products", json!({"name": "Walk spare", "price": 2.5, "stock": 3, "category": "walk"}))
            .await;
        p["id"].as_i64().expect("id")
    }

    async fn new_payment(&mut self, user: &str, template: &str) -> String {
        self.stock_basket(user).await;
        let p = self
            .setup(reqwest::Method::POST, "/api/payments", json!({"user_id": user, "method": "credit_card", "provider": "stripe"}))
            .await;
        let id = p["id"].as_str().expect("payment id").to_string();
        if template.ends_with("/refund") {
            self.setup(reqwest::Method::POST, &format!("/api/payments/{id}/process"), Value::Null).await;
        } else if template.ends_with("/retry") {
            self.setup(reqwest::Method::PUT, &format!("/api/payments/{id}"), json!({"status": "failed"})).await;
        }
        id
    }

    async fn new_notification(&mut self, user: &str, template: &str) -> String {
        let n = self
            .setup(
                reqwest::Method::POST,
                "/api/notifications",
                json!({"user_id": user, "title": "Walk", "message": "A walk", "type": "info", "channel": "email", "priority": "low"}),
            )
            .await;
        let id = n["notification"]["id"].as_str().expect("notification id").to_string();
        if template.ends_with("/retry") {
            self.setup(reqwest::Method::PUT, &format!("/api/notifications/{id}"), json!({"status": "failed"})).await;
        }
        id
    }

    async fn new_payment_method(&mut self, user: &str) -> String {
        // A user may keep 20: the walk makes more than that, so it clears the wallet now and then.
        let (_, text) = self.raw(reqwest::Method::GET, &format!("/api/payment-methods?user_id={user}"), Who::Admin, None, None).await;
        let listed: Value = serde_json::from_str(&text).expect("a list");
        if listed["total"].as_u64().unwrap_or(0) >= 10 {
            for m in listed["payment_methods"].as_array().into_iter().flatten() {
                let path = format!("/api/payment-methods/{}?user_id={user}", m["id"].as_str().expect("id"));
                let (status, text) = self.raw(reqwest::Method::DELETE, &path, Who::Admin, None, None).await;
                assert_eq!(status, 204, "clearing the wallet: {text}");
            }
        }
        let token = format!("tok_walk_{}", self.rng.random::<u64>());
        let body = json!({"user_id": user, "type": "credit_card", "provider": "simulated", "token": token});
        let m = self.setup(reqwest::Method::POST, "/api/payment-methods", body).await;
        m["id"].as_str().expect("payment method id").to_string()
    }

    /// A valid value for a path parameter, from its schema and from data created for `user`.
    async fn path_value(&mut self, op: &Op, p: &Value, user: &str) -> String {
        let name = p["name"].as_str().unwrap();
        let schema = &p["schema"];
        let t = op.template.as_str();
        match name {
            "user_id" => user.to_string(),
            "id" if t.contains("/products/") => self.new_product().await.to_string(),
            "id" if t.contains("/payments/") => self.new_payment(user, t).await,
            "id" if t.contains("/notifications/") => self.new_notification(user, t).await,
            "id" if t.contains("/payment-methods/") => self.new_payment_method(user).await,
            "product_id" => self.product.to_string(),
            "category" => "walk".into(),
            "name" => "Walk".into(),
            "method" => "credit_card".into(),
            "provider" => "stripe".into(),
            "min" => "0".into(),
            "max" => "1000000".into(),
            "start" => "2000-01-01".into(),
            "end" => "2100-01-01T00:00:00Z".into(),
            _ => self.scalar(schema, name).as_str().map(str::to_string).unwrap_or_else(|| self.scalar(schema, name).to_string()),
        }
    }

    /// A valid value of a schema (bounded sizes), for parameters and body fields.
    fn scalar(&mut self, schema: &Value, name: &str) -> Value {
        let checker = Checker { doc: &self.doc };
        let schema = checker.resolve(schema).clone();
        if let Some(values) = schema["enum"].as_array() {
            let values: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
            return values[self.rng.random_range(0..values.len())].clone();
        }
        if let Some(example) = schema["examples"].as_array().and_then(|e| e.first()) {
            return example.clone();
        }
        let first_type = match &schema["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string").to_string(),
            _ => "string".into(),
        };
        match first_type.as_str() {
            "integer" => {
                let min = schema["minimum"].as_i64().unwrap_or(-1000).max(-1000);
                let max = schema["maximum"].as_i64().unwrap_or(1000).min(1000).max(min);
                Value::from(self.rng.random_range(min..=max))
            }
            "number" => {
                let min = schema["minimum"].as_f64().unwrap_or(0.0);
                let max = schema["maximum"].as_f64().unwrap_or(10_000.0).min(10_000.0);
                let cents = self.rng.random_range((min * 100.0) as i64..=(max * 100.0) as i64);
                Value::from(cents as f64 / 100.0)
            }
            "boolean" => Value::from(self.rng.random_bool(0.5)),
            "object" => json!({"walk": name}),
            "array" => json!([OWNER]),
            _ => {
                let min = schema["minLength"].as_u64().unwrap_or(0).max(1);
                let max = schema["maxLength"].as_u64().unwrap_or(16).min(16).max(min);
                let n = self.rng.random_range(min..=max);
                let text: String = (0..n).map(|_| char::from(b'a' + self.rng.random_range(0..26u8))).collect();
                Value::from(text)
            }
        }
    }

    /// A valid body for `schema` acting on `user`'s data: required fields always, optional ones by the
    /// seed; fields whose validity depends on data (ids, owners, future times) from that data.
    fn body(&mut self, op: &Op, schema: &Value, user: &str, path: &BTreeMap<String, String>) -> Map<String, Value> {
        let schema = Checker { doc: &self.doc }.resolve(schema).clone();
        let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut out = Map::new();
        for (name, field) in schema["properties"].as_object().into_iter().flatten() {
            let is_required = required.contains(&name.as_str());
            if !is_required && !self.rng.random_bool(0.5) {
                continue;
            }
            let value = match name.as_str() {
                "user_id" => Value::from(user),
                "user_ids" => json!([user]),
                "product_id" if op.template.ends_with("/items") => Value::from(self.product),
                "product_id" => Value::from(path.get("product_id").and_then(|p| p.parse::<i64>().ok()).unwrap_or(self.product)),
                "quantity" => Value::from(if op.method == reqwest::Method::PUT { 2 } else { 1 }),
                "send_at" | "expires_at" => Value::from("2100-01-01T00:00:00Z"),
                "method" => Value::from("credit_card"),
                "currency" => Value::from("USD"),
                // A stored method: a token not stored yet, a card that has not expired.
                "token" => Value::from(format!("tok_walk_{}", self.rng.random::<u64>())),
                "expiry_month" => Value::from(12),
                "expiry_year" => Value::from(2099),
                // Must equal the path's id when present; left out.
                "id" | "payment_id" | "amount" => continue,
                // Names a stored method (the payment-method routes are walked on their own); left out.
                "payment_method_id" => continue,
                // The fixture payment is pending: any status but `refunded` (which needs a completed
                // one) is a change it can take.
                "status" if op.template.ends_with("/payments/{id}") => {
                    let mut value = self.scalar(field, name);
                    while value == "refunded" {
                        value = self.scalar(field, name);
                    }
                    value
                }
                _ => self.scalar(field, name),
            };
            out.insert(name.clone(), value);
        }
        // Without a stored method a checkout needs its method and provider (a rule the document cannot say).
        if op.method == reqwest::Method::POST && op.template.ends_with("/payments") {
            out.entry("method").or_insert_with(|| Value::from("credit_card"));
            out.entry("provider").or_insert_with(|| Value::from("stripe"));
        }
        // An expiry is a month and a year, or neither (a rule the document cannot say).
        if out.contains_key("expiry_month") != out.contains_key("expiry_year") {
            out.insert("expiry_month".into(), Value::from(12));
            out.insert("expiry_year".into(), Value::from(2099));
        }
        out
    }

    fn declared<'d>(&self, op: &'d Op, status: u16) -> Option<&'d Value> {
        op.spec["responses"].get(status.to_string())
    }

    /// Sends one request and checks its answer against the document.
    async fn send(&mut self, op: &Op, input: &Input, who: Who, case: &str) -> u16 {
        let mut path = op.template.clone();
        for (k, v) in &input.path {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        if !input.query.is_empty() {
            let q: Vec<String> = input.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            path = format!("{path}?{}", q.join("&"));
        }
        let (status, text) = self.raw(op.method.clone(), &path, who, input.body.clone(), input.idempotency.as_deref()).await;
        let label =
            format!("{} ({case}, {who:?}) {} {path}: {status} {}", op.label(), op.method, text.chars().take(300).collect::<String>());
        self.seen.insert((status, op.label()));
        if status == op.success() {
            self.succeeded.insert(op.label());
        }
        if status >= 500 {
            self.failures.push(format!("server error: {label}"));
        }
        match self.declared(op, status) {
            None => self.failures.push(format!("undeclared status: {label}")),
            Some(response) => match response["content"]["application/json"]["schema"].clone() {
                Value::Null => {}
                schema => match serde_json::from_str::<Value>(&text) {
                    Err(e) => self.failures.push(format!("not JSON ({e}): {label}")),
                    Ok(body) => {
                        let mut errors = Vec::new();
                        Checker { doc: &self.doc }.check(&schema, &body, "body", &mut errors);
                        if !errors.is_empty() {
                            self.failures.push(format!("body does not match its schema: {label}: {}", errors.join("; ")));
                        }
                    }
                },
            },
        }
        status
    }

    /// Sends an input the document calls invalid (as an admin, so that access never decides): 400.
    async fn invalid(&mut self, op: &Op, input: &Input, case: &str) {
        let status = self.send(op, input, Who::Admin, case).await;
        if status != 400 {
            self.failures.push(format!("{} ({case}): the document calls this input invalid, the API answered {status}", op.label()));
        }
    }

    /// A fully valid input for `op` acting on `user`'s data.
    async fn valid_input(&mut self, op: &Op, user: &str) -> Input {
        if op.access() != "public" {
            self.stock_basket(user).await;
        }
        let mut input = Input::default();
        for p in op.params("path") {
            let name = p["name"].as_str().unwrap().to_string();
            let v = self.path_value(op, p, user).await;
            input.path.insert(name, v);
        }
        for p in op.params("query") {
            let name = p["name"].as_str().unwrap().to_string();
            if p["required"] == true || self.rng.random_bool(0.5) {
                let v = if name == "user_id" { Value::from(user) } else { self.scalar(&p["schema"], &name) };
                input.query.push((name, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
            }
        }
        if let Some(schema) = op.spec["requestBody"]["content"]["application/json"]["schema"].as_object().cloned() {
            let body = self.body(op, &Value::Object(schema), user, &input.path);
            input.body = Some(Value::Object(body).to_string().into_bytes());
        }
        input
    }

    async fn walk(&mut self, op: &Op) {
        let access = op.access().to_string();
        // Valid inputs, for each caller.
        for who in [Who::Admin, Who::User, Who::Anonymous] {
            let input = self.valid_input(op, OWNER).await;
            let status = self.send(op, &input, who, "valid").await;
            let refused = match (access.as_str(), who) {
                ("public", _) => None,
                (_, Who::Anonymous) => Some(401),
                ("admin", Who::User) => Some(403),
                _ => None,
            };
            if let Some(expected) = refused
                && status != expected
            {
                self.failures.push(format!("{} valid with {who:?}: {status}, expected {expected}", op.label()));
            }
            if refused.is_none() && status == 401 || (refused.is_none() && access == "user" && status == 403) {
                self.failures.push(format!("{} valid with {who:?} on its own data: refused with {status}", op.label()));
            }
        }
        // Another user's data.
        if access == "user" {
            let input = self.valid_input(op, STRANGER).await;
            let status = self.send(op, &input, Who::User, "another user's data").await;
            if status != 403 {
                self.failures.push(format!("{} on another user's data: {status}, expected 403", op.label()));
            }
        }
        let base = self.valid_input(op, OWNER).await;
        // Path parameters.
        for p in op.params("path") {
            let name = p["name"].as_str().unwrap();
            for bad in invalid_values(&p["schema"], true) {
                let mut input = base.clone();
                input.path.insert(name.to_string(), bad.clone());
                self.invalid(op, &input, &format!("path {name}={}", bad.chars().take(24).collect::<String>())).await;
            }
        }
        // Query parameters.
        for p in op.params("query") {
            let name = p["name"].as_str().unwrap();
            for bad in invalid_values(&p["schema"], false) {
                let mut input = base.clone();
                input.query.retain(|(k, _)| k != name);
                input.query.push((name.to_string(), bad.clone()));
                self.invalid(op, &input, &format!("query {name}={}", bad.chars().take(24).collect::<String>())).await;
            }
            if p["required"] == true {
                let mut input = base.clone();
                input.query.retain(|(k, _)| k != name);
                self.invalid(op, &input, &format!("query {name} missing")).await;
            }
        }
        // Bodies.
        if let Some(schema) = op.spec["requestBody"]["content"]["application/json"]["schema"].as_object().cloned() {
            let schema = Checker { doc: &self.doc }.resolve(&Value::Object(schema)).clone();
            let required_body = op.spec["requestBody"]["required"] == true;
            let mut whole: Vec<(&str, &[u8])> =
                vec![("malformed", b"{\"a\": "), ("an array", b"[1, 2]"), ("a string", b"\"x\""), ("a number", b"7")];
            if required_body {
                whole.push(("empty", b""));
            }
            for (what, bytes) in whole {
                let mut input = base.clone();
                input.body = Some(bytes.to_vec());
                self.invalid(op, &input, &format!("body {what}")).await;
            }
            let valid: Map<String, Value> = base.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for (name, field) in schema["properties"].as_object().into_iter().flatten() {
                let mut cases: Vec<(String, Option<Value>)> = invalid_json(field).into_iter().map(|(w, v)| (w, Some(v))).collect();
                if required.contains(&name.as_str()) {
                    cases.push(("missing".into(), None));
                }
                for (what, value) in cases {
                    let mut body = valid.clone();
                    match value {
                        Some(v) => body.insert(name.clone(), v),
                        None => body.remove(name),
                    };
                    let mut input = base.clone();
                    input.body = Some(Value::Object(body).to_string().into_bytes());
                    self.invalid(op, &input, &format!("body {name}: {what}")).await;
                }
            }
        }
        // Data that does not exist: a product, payment or notification id, a user without a basket.
        let absent: Vec<(&str, &str)> = op
            .params("path")
            .iter()
            .filter_map(|p| match (p["name"].as_str().unwrap(), op.template.as_str()) {
                ("id", t) if t.contains("/products/") => Some(("id", "987654321")),
                ("id", _) => Some(("id", "absent-0123")),
                ("user_id", t) if t.contains("/baskets/") => Some(("user_id", "nobody")),
                _ => None,
            })
            .collect();
        for (name, value) in absent {
            let mut input = base.clone();
            input.path.insert(name.into(), value.into());
            self.send(op, &input, Who::Admin, &format!("absent {name}")).await;
        }
        // The Idempotency-Key header: malformed keys are a 400; a key reused for a different request
        // (new data, so another path or body) is a 409.
        if op.params_named("Idempotency-Key") {
            for key in ["two words".to_string(), "k".repeat(129)] {
                let mut input = base.clone();
                input.idempotency = Some(key);
                self.invalid(op, &input, "bad Idempotency-Key").await;
            }
            self.keys += 1;
            let key = format!("walk-{}", self.keys);
            let mut first = self.valid_input(op, OWNER).await;
            first.idempotency = Some(key.clone());
            let status = self.send(op, &first, Who::Admin, "with an Idempotency-Key").await;
            let mut second = self.valid_input(op, OWNER).await;
            second.idempotency = Some(key);
            let replay = self.send(op, &second, Who::Admin, "the Idempotency-Key again, another request").await;
            if (200..300).contains(&status) && (first.path != second.path || first.body != second.body) && replay != 409 {
                self.failures.push(format!("{}: a key reused for another request answered {replay}, expected 409", op.label()));
            }
        }
    }
}

/// Path or query texts that the schema rules out.
fn invalid_values(schema: &Value, in_path: bool) -> Vec<String> {
    let mut out = Vec::new();
    match schema["type"].as_str() {
        Some("integer") => {
            out.extend(["abc", "1.5", "99999999999999999999"].map(String::from));
            if let Some(min) = schema["minimum"].as_i64() {
                out.push((i128::from(min) - 1).to_string());
            }
            if let Some(max) = schema["maximum"].as_i64() {
                out.push((i128::from(max) + 1).to_string());
            }
        }
        Some("string") => {
            if schema["enum"].is_array() {
                out.push("no-such-value".into());
            }
            if schema.get("pattern").is_some() {
                out.extend(["not-a-value", "1.0001"].map(String::from));
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                out.push("a".repeat(max as usize + 1));
            }
            if schema["minLength"].as_u64().is_some_and(|m| m > 0) {
                // A control character (percent-encoded).
                out.push("a%07b".into());
                if !in_path {
                    out.push(String::new());
                }
            }
        }
        _ => {}
    }
    out
}

/// JSON values that a body field's schema rules out, with what each is.
fn invalid_json(schema: &Value) -> Vec<(String, Value)> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let nullable = types.contains(&"null");
    let main = types.iter().copied().find(|t| *t != "null").unwrap_or("");
    let mut out = Vec::new();
    if !nullable {
        out.push(("null".into(), Value::Null));
    }
    match main {
        "string" => {
            out.push(("a number".into(), json!(12345)));
            if schema["enum"].is_array() {
                out.push(("not one of the values".into(), json!("no-such-value")));
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                out.push(("too long".into(), Value::from("a".repeat(max as usize + 1))));
            }
            if schema["minLength"].as_u64().is_some_and(|m| m > 0) {
                out.push(("empty".into(), json!("")));
            }
            if schema.get("pattern").is_some() {
                out.push(("malformed".into(), json!("not-a-value")));
            }
        }
        "integer" => {
            out.push(("a string".into(), json!("1")));
            out.push(("a fraction".into(), json!(1.5)));
            if let Some(min) = schema["minimum"].as_i64() {
                out.push(("below the minimum".into(), json!(min - 1)));
            }
            if let Some(max) = schema["maximum"].as_i64() {
                out.push(("above the maximum".into(), json!(max + 1)));
            }
        }
        "number" => {
            out.push(("a string".into(), json!("x")));
            if let Some(min) = schema["minimum"].as_f64() {
                out.push(("below the minimum".into(), json!(min - 1.0)));
            }
            if let Some(max) = schema["maximum"].as_f64() {
                out.push(("above the maximum".into(), json!(max + 1.0)));
            }
        }
        "object" => {
            out.push(("a string".into(), json!("x")));
            if schema["additionalProperties"]["type"] == "string" {
                out.push(("a non-string value".into(), json!({"k": 1})));
            }
            if let Some(max) = schema["maxProperties"].as_u64() {
                let big: Map<String, Value> = (0..=max).map(|i| (format!("k{i}"), json!("v"))).collect();
                out.push(("too many entries".into(), Value::Object(big)));
            }
            if let Some(max) = schema["propertyNames"]["maxLength"].as_u64() {
                out.push(("a key too long".into(), json!({ "k".repeat(max as usize + 1): "v" })));
            }
        }
        "array" => {
            out.push(("a string".into(), json!("x")));
            if let Some(max) = schema["maxItems"].as_u64() {
                out.push(("too many items".into(), Value::Array((0..=max).map(|i| json!(format!("u{i}"))).collect())));
            }
            if schema["items"]["minLength"].as_u64().is_some_and(|m| m > 0) {
                out.push(("an empty item".into(), json!([""])));
            }
        }
        _ => {}
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_document_declares() {
    let seed = std::env::var("KASSA_WALK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let mut cfg = config();
    // Thousands of requests from one client: limits have their own tests.
    cfg.rate_limit.enabled = false;
    let node = embedded(cfg);
    let client = client();
    let user = register(&client, &node, OWNER, "walker-password").await;
    let admin = login(&client, &node, "admin", ADMIN_PASSWORD).await;
    let doc: Value = client.get(node.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut w = Walk {
        node,
        client,
        doc,
        user,
        admin,
        rng: StdRng::seed_from_u64(seed),
        product: 0,
        requests: 0,
        keys: 0,
        failures: Vec::new(),
        succeeded: BTreeSet::new(),
        seen: BTreeSet::new(),
    };
    let product = w
        .setup(reqwest::Method::POST, "/api/products", json!({"name": "Walk lamp", "price": 19.99, "stock": 1_000_000, "category": "walk"}))
        .await;
    w.product = product["id"].as_i64().unwrap();

    let mut ops = Vec::new();
    for (template, item) in w.doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            ops.push(Op { method, template: template.clone(), spec: spec.clone() });
        }
    }
    assert!(ops.len() > 130, "every route and its alias: {}", ops.len());
    for op in &ops {
        w.walk(op).await;
    }

    // A success needs state the walk sets up for each route (payments processed before a refund,
    // failed before a retry); every operation must have been seen succeeding at least once.
    let never: Vec<String> =
        ops.iter().map(Op::label).filter(|l| !w.succeeded.contains(l) && !SUCCEEDS_ELSEWHERE.contains(&l.as_str())).collect();
    assert!(never.is_empty(), "seed {seed}: never answered its success status: {never:#?}");
    assert!(w.requests <= REQUESTS_MAX, "seed {seed}: {} requests", w.requests);
    let shown: Vec<&String> = w.failures.iter().take(60).collect();
    assert!(w.failures.is_empty(), "seed {seed}: {} failures in {} requests:\n{shown:#?}", w.failures.len(), w.requests);
    // The walk reached the statuses the document is about.
    let statuses: BTreeSet<u16> = w.seen.iter().map(|(s, _)| *s).collect();
    for s in [200, 201, 400, 401, 403, 404, 409] {
        assert!(statuses.contains(&s), "seed {seed}: no {s} seen: {statuses:?}");
    }
}

/// The checker itself: what it accepts and what it refuses.
#[test]
fn the_schema_checker_refuses_what_it_should() {
    let doc = json!({"components": {"schemas": {
        "Item": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer", "minimum": 1},
            "tag": {"type": ["string", "null"], "maxLength": 3, "enum": ["a", "bcd", null]},
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "child": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Item"}]},
        }},
        "List": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}, "maxItems": 2},
        "Odd": {"type": "string", "pattern": "^x$"},
    }}});
    let checker = Checker { doc: &doc };
    let list = json!({"$ref": "#/components/schemas/List"});
    let errors = |schema: &Value, v: Value| {
        let mut e = Vec::new();
        checker.check(schema, &v, "v", &mut e);
        e
    };
    assert_eq!(
        errors(&list, json!([{"id": 1, "tag": null, "meta": {"k": "v"}, "child": {"id": 2}}, {"id": 3, "tag": "bcd"}])),
        Vec::<String>::new()
    );
    for bad in [
        json!({"id": 1}),
        json!([{"tag": "a"}]),
        json!([{"id": 0}]),
        json!([{"id": 1.5}]),
        json!([{"id": 1, "tag": "zz"}]),
        json!([{"id": 1, "meta": {"k": 1}}]),
        json!([{"id": 1, "child": {"tag": "a"}}]),
        json!([{"id": 1}, {"id": 2}, {"id": 3}]),
    ] {
        assert!(!errors(&list, bad.clone()).is_empty(), "{bad}");
    }
    assert!(!errors(&json!({"$ref": "#/components/schemas/Odd"}), json!("x")).is_empty(), "an unsupported keyword is an error");
}
