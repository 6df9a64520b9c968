//! Kassa's workloads over HTTP (W1-W5 of BENCHMARKS.md), the catalog seeding, and the ceiling worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::dist::{KeyDist, Zipf};
use crate::errors::{ErrorCounts, OpError};
use crate::hist::{Latencies, LatencySummary};
use crate::http::{HttpClient, parse};
use crate::load::{Op, OpOutcome};

/// Units each seeded product starts with: enough that checkouts never run out during a run.
pub const SEED_STOCK: i64 = 1_000_000_000;
/// Products per category, so that a category listing is a bounded page, not a tenth of the catalog.
pub const PRODUCTS_PER_CATEGORY: usize = 100;

/// The seeded catalog the workloads draw from.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub ids: Arc<Vec<u64>>,
    pub categories: Arc<Vec<String>>,
    pub zipf: Arc<Zipf>,
}

impl Catalog {
    pub fn new(ids: Vec<u64>, categories: Vec<String>) -> Catalog {
        let zipf = Zipf::new(ids.len(), 0.99);
        Catalog { ids: Arc::new(ids), categories: Arc::new(categories), zipf: Arc::new(zipf) }
    }

    pub fn pick(&self, rng: &mut SmallRng, dist: KeyDist) -> u64 {
        let i = match dist {
            KeyDist::Uniform => rng.random_range(0..self.ids.len()),
            KeyDist::Zipf => self.zipf.sample(rng),
        };
        self.ids[i]
    }

    pub fn category(&self, rng: &mut SmallRng) -> &str {
        &self.categories[rng.random_range(0..self.categories.len())]
    }
}

/// Where a worker sends its requests.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub bearer: Option<String>,
    pub timeout: Duration,
}

impl HttpTarget {
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.addr, self.bearer.as_deref(), self.timeout)
    }
}

pub fn category_name(index: usize) -> String {
    format!("cat-{index:05}")
}

/// The JSON of one seeded product (price as decimal text of minor units, as the API reads it).
pub fn product_body(index: usize, stock: i64) -> String {
    let cents = 199 + (index as i64 * 37) % 99_800;
    serde_json::json!({
        "name": format!("Bench product {index}"),
        "description": "Seeded by kassa-bench",
        "price": serde_json::Number::from_f64(cents as f64 / 100.0).unwrap_or_else(|| serde_json::Number::from(1)),
        "stock": stock,
        "category": category_name(index / PRODUCTS_PER_CATEGORY),
    })
    .to_string()
}

#[derive(Deserialize)]
struct IdOnly {
    id: serde_json::Value,
}

fn id_u64(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Creates `count` products through `POST /api/products` with `concurrency` connections.
pub async fn seed_products(target: &HttpTarget, count: usize, concurrency: usize) -> Result<(Catalog, f64), BenchError> {
    let started = Instant::now();
    let concurrency = concurrency.clamp(1, count.max(1));
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut client = target.client();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count / concurrency + 1);
            let mut errors = ErrorCounts::default();
            let mut index = w;
            while index < count {
                let body = product_body(index, SEED_STOCK);
                let result = client.post_json("/api/products", body, &[200, 201]).await;
                match result.and_then(|r| parse::<IdOnly>(&r.body)) {
                    Ok(p) => match id_u64(&p.id) {
                        Some(id) => ids.push(id),
                        None => errors.add(&OpError::BadResponse(format!("product id {}", p.id))),
                    },
                    Err(e) => errors.add(&e),
                }
                // Stop early on a target that refuses everything (bad token, wrong route).
                if errors.total() > 20 && ids.is_empty() {
                    break;
                }
                index += concurrency;
            }
            (ids, errors)
        }));
    }
    let mut ids = Vec::with_capacity(count);
    let mut errors = ErrorCounts::default();
    for h in handles {
        let (mut part, errs) = h.await.map_err(|e| BenchError::Seed(e.to_string()))?;
        ids.append(&mut part);
        errors.merge(&errs);
    }
    if ids.len() < count {
        return Err(BenchError::Seed(format!(
            "created {} of {count} products; errors {errors}; first messages {:?}",
            ids.len(),
            errors.samples
        )));
    }
    ids.sort_unstable();
    let categories = (0..count.div_ceil(PRODUCTS_PER_CATEGORY)).map(category_name).collect();
    let secs = started.elapsed().as_secs_f64();
    Ok((Catalog::new(ids, categories), secs))
}

/// Creates one basket per user (`POST /api/baskets` with `{"user_id"}`, the contract's route), so that the
/// seed mix's `GET /api/baskets/:user_id` finds them.
pub async fn seed_baskets(target: &HttpTarget, users: &[String], concurrency: usize) -> Result<(), BenchError> {
    post_per_user(target, users, concurrency, "basket creation", |_, user| {
        ("/api/baskets".to_owned(), serde_json::json!({ "user_id": user }).to_string())
    })
    .await
}

/// Gives every user a basket with one line (`POST /api/baskets/{user}/items`, which creates the basket),
/// user `i` holding product `i mod products`; returns the seconds it took.
pub async fn seed_basket_lines(target: &HttpTarget, catalog: &Catalog, users: &[String], concurrency: usize) -> Result<f64, BenchError> {
    let started = Instant::now();
    let ids = catalog.ids.clone();
    post_per_user(target, users, concurrency, "basket lines", move |i, user| {
        (format!("/api/baskets/{user}/items"), item_body(ids[i % ids.len()], 1))
    })
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// One POST per user, `concurrency` at a time, each worker its own share of the users; `request(i,
/// user)` gives the path and body for user `i`. Any failure fails the seeding (`what` names it).
async fn post_per_user(
    target: &HttpTarget,
    users: &[String],
    concurrency: usize,
    what: &str,
    request: impl Fn(usize, &str) -> (String, String) + Clone + Send + 'static,
) -> Result<(), BenchError> {
    let users = Arc::new(users.to_vec());
    let concurrency = concurrency.clamp(1, users.len().max(1));
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (users, request) = (users.clone(), request.clone());
        let mut client = target.client();
        handles.push(tokio::spawn(async move {
            let mut errors = ErrorCounts::default();
            for (i, user) in users.iter().enumerate().skip(w).step_by(concurrency) {
                let (path, body) = request(i, user);
                if let Err(e) = client.post_json(&path, body, &[200, 201]).await {
                    errors.add(&e);
                }
            }
            errors
        }));
    }
    let mut errors = ErrorCounts::default();
    for h in handles {
        errors.merge(&h.await.map_err(|e| BenchError::Seed(e.to_string()))?);
    }
    if errors.total() > 0 {
        return Err(BenchError::Seed(format!("{what} failed: {errors}; {:?}", errors.samples)));
    }
    Ok(())
}

/// Users `prefix_0 .. prefix_{n-1}`.
pub fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}_{i}")).collect()
}

/// Worker `w` of `workers` gets every `workers`-th user, so that no two workers touch one basket.
pub fn user_slice(all: &[String], w: usize, workers: usize) -> Vec<String> {
    let mine: Vec<String> = all.iter().skip(w).step_by(workers.max(1)).cloned().collect();
    if mine.is_empty() { vec![format!("{}_extra_{w}", all.first().map_or("user", |s| s.as_str()))] } else { mine }
}

fn item_body(product_id: u64, quantity: i64) -> String {
    format!(r#"{{"product_id":{product_id},"quantity":{quantity}}}"#)
}

fn payment_body(user: &str, basket_id: &str) -> String {
    serde_json::json!({"user_id": user, "basket_id": basket_id, "method": "credit_card", "provider": "stripe"}).to_string()
}

#[derive(Deserialize)]
struct ProductList {
    products: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct PaymentAnswer {
    id: serde_json::Value,
    #[serde(default)]
    status: String,
}

/// Add item, create payment, process payment: the checkout of W1, W4 and W5.
async fn checkout(client: &mut HttpClient, user: &str, product_id: u64, requests: &mut u32) -> Result<(), OpError> {
    let add = client.post_json(&format!("/api/baskets/{user}/items"), item_body(product_id, 1), &[200, 201]).await;
    *requests += 1;
    let basket: IdOnly = parse(&add?.body)?;
    let basket_id = id_string(&basket.id).unwrap_or_default();
    let created = client.post_json("/api/payments", payment_body(user, &basket_id), &[201]).await;
    *requests += 1;
    let payment: PaymentAnswer = parse(&created?.body)?;
    let payment_id = id_string(&payment.id).ok_or_else(|| OpError::BadResponse("payment without id".into()))?;
    let processed = client.post_json(&format!("/api/payments/{payment_id}/process"), "{}", &[200]).await;
    *requests += 1;
    let done: PaymentAnswer = parse(&processed?.body)?;
    if done.status != "completed" {
        return Err(OpError::BadResponse(format!("processed payment has status {:?}", done.status)));
    }
    Ok(())
}

/// Products per page of the W1 listing.
pub const LIST_PAGE: usize = 20;
/// W1 lists one of the first this many pages.
pub const LIST_PAGES_BROWSED: usize = 50;

/// W1 seed mix: list, get one, get the basket, add an item, create a payment, process it.
pub struct SeedMix {
    client: HttpClient,
    rng: SmallRng,
    users: Vec<String>,
    catalog: Catalog,
}

impl SeedMix {
    pub fn new(target: &HttpTarget, catalog: Catalog, users: Vec<String>, seed: u64) -> SeedMix {
        SeedMix { client: target.client(), rng: SmallRng::seed_from_u64(seed), users, catalog }
    }

    async fn iteration(&mut self, requests: &mut u32) -> Result<(), OpError> {
        // One of the first pages, as shoppers browse (the old script listed everything and took the first
        // product; with 100k products that would be a 100k-row answer, and every buyer would buy product 1).
        let pages = (self.catalog.ids.len() / LIST_PAGE).clamp(1, LIST_PAGES_BROWSED);
        let offset = self.rng.random_range(0..pages) * LIST_PAGE;
        let list = self.client.get(&format!("/api/products?limit={LIST_PAGE}&offset={offset}")).await;
        *requests += 1;
        let list: ProductList = parse(&list?.body)?;
        let product_id = if list.products.is_empty() {
            self.catalog.pick(&mut self.rng, KeyDist::Uniform)
        } else {
            let p = &list.products[self.rng.random_range(0..list.products.len())];
            id_u64(&p.id).ok_or_else(|| OpError::BadResponse(format!("product id {}", p.id)))?
        };
        let one = self.client.get(&format!("/api/products/{product_id}")).await;
        *requests += 1;
        one?;
        let user = self.users[self.rng.random_range(0..self.users.len())].clone();
        let basket = self.client.get(&format!("/api/baskets/{user}")).await;
        *requests += 1;
        basket?;
        checkout(&mut self.client, &user, product_id, requests).await
    }
}

impl Op for SeedMix {
    async fn run(&mut self) -> OpOutcome {
        let mut requests = 0;
        match self.iteration(&mut requests).await {
            Ok(()) => OpOutcome::ok(requests),
            Err(e) => OpOutcome::failed(requests, e),
        }
    }
}

/// What a browse worker asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browse {
    ById(KeyDist),
    ByCategory,
}

/// W2 browse: `GET /api/products/:id` or `GET /api/products/category/:c`.
pub struct BrowseHttp {
    client: HttpClient,
    rng: SmallRng,
    catalog: Catalog,
    what: Browse,
}

impl BrowseHttp {
    pub fn new(target: &HttpTarget, catalog: Catalog, what: Browse, seed: u64) -> BrowseHttp {
        BrowseHttp { client: target.client(), rng: SmallRng::seed_from_u64(seed), catalog, what }
    }
}

impl Op for BrowseHttp {
    async fn run(&mut self) -> OpOutcome {
        let path = match self.what {
            Browse::ById(dist) => format!("/api/products/{}", self.catalog.pick(&mut self.rng, dist)),
            Browse::ByCategory => format!("/api/products/category/{}", self.catalog.category(&mut self.rng)),
        };
        match self.client.get(&path).await {
            Ok(_) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// Lines a basket written by W3 reaches at most: further adds raise quantities. Real baskets are small, and
/// an ever-growing basket would measure the size of the answer (the whole basket) rather than the write.
pub const BASKET_LINES_MAX: u64 = 10;

/// Which user and product the next basket write goes to: users in turn, each cycling over its own
/// `BASKET_LINES_MAX` products (chosen at random once).
#[derive(Clone, Debug)]
pub struct BasketRotation {
    users: Vec<String>,
    bases: Vec<usize>,
    next: u64,
}

impl BasketRotation {
    pub fn new(users: Vec<String>, catalog_len: usize, seed: u64) -> BasketRotation {
        let mut rng = SmallRng::seed_from_u64(seed);
        let users = if users.is_empty() { vec!["user".to_owned()] } else { users };
        let bases = users.iter().map(|_| rng.random_range(0..catalog_len.max(1))).collect();
        BasketRotation { users, bases, next: 0 }
    }

    /// The user and the index (into the catalog) of the product of the next write.
    pub fn next(&mut self, catalog_len: usize) -> (&str, usize) {
        let n = self.users.len() as u64;
        let user = (self.next % n) as usize;
        let round = self.next / n;
        self.next = self.next.wrapping_add(1);
        let index = (self.bases[user] + (round % BASKET_LINES_MAX) as usize) % catalog_len.max(1);
        (&self.users[user], index)
    }
}

/// W3 durable basket write: `POST /api/baskets/:user_id/items`.
pub struct AddItemHttp {
    client: HttpClient,
    catalog: Catalog,
    rotation: BasketRotation,
}

impl AddItemHttp {
    pub fn new(target: &HttpTarget, catalog: Catalog, users: Vec<String>, seed: u64) -> AddItemHttp {
        let rotation = BasketRotation::new(users, catalog.ids.len(), seed);
        AddItemHttp { client: target.client(), catalog, rotation }
    }
}

impl Op for AddItemHttp {
    async fn run(&mut self) -> OpOutcome {
        let (user, index) = self.rotation.next(self.catalog.ids.len());
        let product_id = self.catalog.ids[index];
        match self.client.post_json(&format!("/api/baskets/{user}/items"), item_body(product_id, 1), &[200, 201]).await {
            Ok(_) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// W4 checkout: add item, create payment, process payment.
pub struct CheckoutHttp {
    client: HttpClient,
    rng: SmallRng,
    catalog: Catalog,
    users: Vec<String>,
    next_user: usize,
}

impl CheckoutHttp {
    pub fn new(target: &HttpTarget, catalog: Catalog, users: Vec<String>, seed: u64) -> CheckoutHttp {
        CheckoutHttp { client: target.client(), rng: SmallRng::seed_from_u64(seed), catalog, users, next_user: 0 }
    }
}

impl Op for CheckoutHttp {
    async fn run(&mut self) -> OpOutcome {
        let user = self.users[self.next_user % self.users.len()].clone();
        self.next_user = self.next_user.wrapping_add(1);
        let product_id = self.catalog.pick(&mut self.rng, KeyDist::Uniform);
        let mut requests = 0;
        match checkout(&mut self.client, &user, product_id, &mut requests).await {
            Ok(()) => OpOutcome::ok(requests),
            Err(e) => OpOutcome::failed(requests, e),
        }
    }
}

/// A plain GET of a fixed path (the `ceiling` reference).
pub struct FixedGet {
    client: HttpClient,
    path: String,
}

impl FixedGet {
    pub fn new(target: &HttpTarget, path: &str) -> FixedGet {
        FixedGet { client: target.client(), path: path.to_owned() }
    }
}

impl Op for FixedGet {
    async fn run(&mut self) -> OpOutcome {
        match self.client.get(&self.path).await {
            Ok(_) => OpOutcome::ok(1),
            Err(e) => OpOutcome::failed(1, e),
        }
    }
}

/// The outcome of one W5 flash-sale round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlashSale {
    pub round: u32,
    pub product_id: u64,
    pub stock_initial: i64,
    pub buyers: usize,
    /// Payments that reached `completed`.
    pub sold: u64,
    /// Buyers turned away with 409 (at add-item, create-payment or process).
    pub rejected_409: u64,
    /// Every other failure, by kind: must be empty for a clean sale.
    pub other_failures: std::collections::BTreeMap<String, u64>,
    pub other_failure_samples: std::collections::BTreeMap<String, String>,
    /// `stock` of the product afterwards (must be 0).
    pub stock_after: Option<i64>,
    /// `sold` of the product afterwards, when the API exposes it (must equal the initial stock).
    pub sold_field_after: Option<i64>,
    pub exact: bool,
    pub clean: bool,
    pub elapsed_s: f64,
    pub checkouts_per_s: f64,
    /// Whole buyer flow (add, create, process), successful and rejected buyers alike.
    pub latency: LatencySummary,
}

#[derive(Deserialize)]
struct ProductState {
    #[serde(default)]
    stock: Option<i64>,
    #[serde(default)]
    sold: Option<i64>,
}

enum BuyerEnd {
    Bought,
    Rejected,
    Failed(OpError),
}

async fn buyer(client: &mut HttpClient, user: &str, product_id: u64) -> BuyerEnd {
    let mut requests = 0;
    match checkout(client, user, product_id, &mut requests).await {
        Ok(()) => BuyerEnd::Bought,
        Err(OpError::Status(409)) => BuyerEnd::Rejected,
        Err(e) => BuyerEnd::Failed(e),
    }
}

/// W5: one product with `stock` units, `buyers` concurrent buyers (one connection each), all released at once.
pub async fn flash_sale(admin: &HttpTarget, target: &HttpTarget, round: u32, stock: i64, buyers: usize) -> Result<FlashSale, BenchError> {
    let mut setup = admin.client();
    let body = serde_json::json!({
        "name": format!("Flash sale {round}"),
        "description": "W5",
        "price": 9.99,
        "stock": stock,
        "category": "flash-sale",
    })
    .to_string();
    let created = setup.post_json("/api/products", body, &[200, 201]).await.map_err(|e| BenchError::Seed(format!("flash product: {e}")))?;
    let product: IdOnly = parse(&created.body).map_err(|e| BenchError::Seed(e.to_string()))?;
    let product_id = id_u64(&product.id).ok_or_else(|| BenchError::Seed("flash product without id".into()))?;

    let gate = Arc::new(tokio::sync::Barrier::new(buyers + 1));
    let mut handles = Vec::with_capacity(buyers);
    for b in 0..buyers {
        let gate = gate.clone();
        let mut client = target.client();
        let user = format!("flash{round}_{b}_{}", std::process::id());
        handles.push(tokio::spawn(async move {
            // Open the connection before the gate so that the sale itself measures only the sale.
            let _ = client.request(Method::GET, &format!("/api/products/{product_id}"), None).await;
            gate.wait().await;
            let t = Instant::now();
            let end = buyer(&mut client, &user, product_id).await;
            (end, t.elapsed())
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut sold = 0;
    let mut rejected = 0;
    let mut other = ErrorCounts::default();
    let mut lat = Latencies::new();
    for h in handles {
        let (end, took) = h.await.map_err(|e| BenchError::Seed(e.to_string()))?;
        lat.record(took);
        match end {
            BuyerEnd::Bought => sold += 1,
            BuyerEnd::Rejected => rejected += 1,
            BuyerEnd::Failed(e) => other.add(&e),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after =
        setup.get(&format!("/api/products/{product_id}")).await.map_err(|e| BenchError::Seed(format!("flash product read: {e}")))?;
    let state: ProductState = parse(&after.body).map_err(|e| BenchError::Seed(e.to_string()))?;
    let exact = sold == stock as u64 && state.stock == Some(0) && state.sold.is_none_or(|s| s == stock);
    Ok(FlashSale {
        round,
        product_id,
        stock_initial: stock,
        buyers,
        sold,
        rejected_409: rejected,
        clean: other.total() == 0,
        other_failures: other.counts,
        other_failure_samples: other.samples,
        stock_after: state.stock,
        sold_field_after: state.sold,
        exact,
        elapsed_s: elapsed,
        checkouts_per_s: if elapsed > 0.0 { sold as f64 / elapsed } else { 0.0 },
        latency: lat.summary(),
    })
}
