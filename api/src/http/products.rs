//! Product service endpoints (contract §2.1).

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use kassa_engine::{CategoryStats, Product, ProductStats, limits};
use kassa_engine::{Currency, Cursor, Deleted, Engine, Page, ProductInput, ProductQuery, cmd};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::page_cache::{PageKey, Source};
use super::product_json;
use super::spec::{AFTER, Field, KEYSET_PAGED, Kind, LIMIT, LONG, LimitDefault, OFFSET, Param, SHORT};
use super::{ApiResult, AppState, P, PageParams, Q, RouteDef, TEXT_MAX, Write, def, ok, segment};
use crate::access::Access;
use crate::error::ApiError;
use crate::scan::blocking;
use crate::wire::{self, Money, MoneyText, WideMoney};

/// A product as the old API showed it, plus the engine's reservation counters at the end: the schema,
/// and the reference that [`product_json`] (which writes the answers) is tested against.
#[derive(Serialize, ToSchema)]
pub struct ProductJson {
    pub id: u64,
    pub name: String,
    pub description: String,
    #[schema(value_type = f64)]
    pub price: Money,
    /// Units available for sale.
    pub stock: i64,
    pub category: String,
    pub created_at: String,
    pub updated_at: String,
    /// Units held for pending payments.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
}

impl ProductJson {
    pub fn new(p: Product, currency: Currency) -> ProductJson {
        ProductJson {
            id: p.id,
            price: Money::new(p.price, currency),
            stock: p.available,
            created_at: wire::rfc3339(p.created_at),
            updated_at: wire::rfc3339(p.updated_at),
            reserved: p.reserved,
            sold: p.sold,
            name: p.name,
            description: p.description,
            category: p.category,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<ProductJson>,
    pub count: usize,
    /// When the page is full: pass it as `after` for the page that follows (keyset paging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ProductBody {
    /// Optional on update; when present it must equal the path id.
    pub id: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = f64)]
    pub price: Option<MoneyText>,
    pub stock: Option<i64>,
    pub category: Option<String>,
}

impl ProductBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("id", Kind::Int { min: i64::MIN, max: i64::MAX })
            .note("Ignored on create. On update, when present and not 0 it must equal the path id."),
        Field::required("name", SHORT),
        Field::optional("description", LONG),
        Field::required("price", Kind::Amount { min_minor: 0, max_minor: limits::PRICE_MINOR_MAX }),
        Field::optional("stock", Kind::Int { min: 0, max: limits::STOCK_MAX }).note("Units available; 0 when absent."),
        Field::optional("category", SHORT),
    ];

    fn input(self, currency: Currency) -> Result<ProductInput, ApiError> {
        let price = self.price.ok_or_else(|| ApiError::invalid_body("price is required"))?;
        let price = price.minor(currency).map_err(|e| ApiError::invalid_body(e.to_string()))?;
        let name = self.name.unwrap_or_default();
        if name.trim().is_empty() {
            return Err(ApiError::invalid_body("name is required"));
        }
        Ok(ProductInput {
            name,
            description: self.description.unwrap_or_default(),
            price,
            stock: self.stock.unwrap_or(0),
            category: self.category.unwrap_or_default(),
            image_url: String::new(),
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct StatsJson {
    total_products: u64,
    total_categories: u64,
    #[schema(value_type = f64)]
    average_price: Money,
    #[schema(value_type = f64)]
    total_value: WideMoney,
    low_stock_products: u64,
    out_of_stock_products: u64,
}

impl StatsJson {
    fn new(s: ProductStats, currency: Currency) -> StatsJson {
        StatsJson {
            total_products: s.total_products,
            total_categories: s.total_categories,
            average_price: Money::new(s.average_price, currency),
            total_value: WideMoney { minor: s.total_value, currency },
            low_stock_products: s.low_stock_products,
            out_of_stock_products: s.out_of_stock_products,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CategoryJson {
    name: String,
    product_count: u64,
    #[schema(value_type = f64)]
    average_price: Money,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryList {
    categories: Vec<CategoryJson>,
    count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct MessageJson {
    pub message: String,
}

/// A product id in a path: a positive 64-bit integer.
pub(crate) const PRODUCT_ID: Kind = Kind::Int { min: 1, max: i64::MAX };
const ID: Param = Param::path("id", PRODUCT_ID);
const CATEGORY: Param = Param::path("category", Kind::Key(TEXT_MAX));
const MIN: Param = Param::path("min", Kind::AmountText);
const MAX: Param = Param::path("max", Kind::AmountText);
const START: Param = Param::path("start", Kind::Time);
const END: Param = Param::path("end", Kind::Time);
const NAME: Param = Param::path("name", Kind::Key(TEXT_MAX));
const STOCK: Param = Param::path("stock", Kind::Int { min: i64::MIN, max: i64::MAX });
const COUNT: Param = Param::path("count", Kind::Int { min: 1, max: RANDOM_MAX });

pub fn routes() -> Vec<RouteDef> {
    use Access::{Admin, Public};
    let t = "products";
    vec![
        def(Method::GET, "/products", Public, t, "List products by id", list).returns(200, "ProductList").params(&KEYSET_PAGED),
        def(Method::POST, "/products", Admin, t, "Create a product", create).body("ProductBody").returns(201, "ProductJson"),
        def(Method::GET, "/products/{id}", Public, t, "Get a product", get).returns(200, "ProductJson").params(&[ID]).errors(&[404]),
        def(Method::PUT, "/products/{id}", Admin, t, "Replace a product", update)
            .body("ProductBody")
            .returns(200, "ProductJson")
            .params(&[ID])
            .errors(&[404]),
        def(Method::DELETE, "/products/{id}", Admin, t, "Delete a product (refused while units are reserved)", delete)
            .returns(200, "MessageJson")
            .params(&[ID])
            .errors(&[404]),
        def(Method::GET, "/products/top-5", Public, t, "The 5 most expensive products", top5).returns(200, "ProductList"),
        def(Method::GET, "/products/top-10", Public, t, "The 10 most expensive products", top10).returns(200, "ProductList"),
        def(Method::GET, "/products/low-stock-1", Public, t, "Products with at most 1 available", low1)
            .returns(200, "ProductList")
            .params(&KEYSET_PAGED),
        def(Method::GET, "/products/low-stock-10", Public, t, "Products with at most 10 available", low10)
            .returns(200, "ProductList")
            .params(&KEYSET_PAGED),
        def(Method::GET, "/products/category/{category}", Public, t, "Products of a category", by_category)
            .returns(200, "ProductList")
            .params(&[CATEGORY, LIMIT, OFFSET, AFTER]),
        def(Method::GET, "/products/price/{min}/{max}", Public, t, "Products in a price range (inclusive)", by_price)
            .returns(200, "ProductList")
            .params(&[MIN, MAX, LIMIT, OFFSET, AFTER]),
        def(Method::GET, "/products/search/{name}", Public, t, "Products whose name contains the text (case-insensitive)", search)
            .returns(200, "ProductList")
            .params(&[NAME, LIMIT, OFFSET, AFTER]),
        def(Method::GET, "/products/stats", Public, t, "Catalog statistics", stats).returns(200, "StatsJson"),
        def(Method::GET, "/products/categories", Public, t, "Categories with counts and average prices", categories)
            .returns(200, "CategoryList"),
        def(Method::GET, "/products/stock/{stock}", Public, t, "Products with exactly this many available", by_stock)
            .returns(200, "ProductList")
            .params(&[STOCK, LIMIT, OFFSET, AFTER]),
        def(Method::GET, "/products/random/{count}", Public, t, "1 to 50 random products", random)
            .returns(200, "ProductList")
            .params(&[COUNT]),
        def(Method::GET, "/products/created/{start}/{end}", Public, t, "Products created in a time range (inclusive)", by_created)
            .returns(200, "ProductList")
            .params(&[START, END, LIMIT, OFFSET, AFTER]),
    ]
}

/// The most products `/products/random/{count}` answers.
const RANDOM_MAX: i64 = 50;

fn list_body(s: &AppState, q: &ProductQuery, page: Page) -> Result<String, ApiError> {
    let products = s.engine.products(q, page)?;
    let full = page.limit > 0 && products.len() == page.limit;
    let next_after = products.last().filter(|_| full).map(|last| Cursor::of(q, last).to_string());
    Ok(product_json::list_body(&products, s.currency(), next_after.as_deref()))
}

fn query(s: &AppState, q: ProductQuery, page: Page) -> ApiResult {
    Ok(super::json_body_response(StatusCode::OK, list_body(s, &q, page)?))
}

pub(crate) fn parse_id(text: &str) -> Result<u64, ApiError> {
    let invalid = || ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid product ID", "Product ID must be a valid number");
    let v: i64 = text.parse().map_err(|_| invalid())?;
    u64::try_from(v).ok().filter(|v| *v > 0).ok_or_else(invalid)
}

fn product_reply(s: &AppState, p: &Product, status: StatusCode) -> ApiResult {
    Ok(super::json_body_response(status, product_json::product_body(p, s.currency())))
}

async fn list(State(s): State<AppState>, Q(p): Q<PageParams>) -> ApiResult {
    query(&s, ProductQuery::All, p.product_page(&s.cfg, LimitDefault::Page)?)
}

async fn get(State(s): State<AppState>, P(id): P<String>) -> ApiResult {
    let id = parse_id(&id)?;
    match s.engine.product(id)? {
        Some(p) => product_reply(&s, &p, StatusCode::OK),
        None => Err(ApiError::not_found("product not found: product not found")),
    }
}

async fn create(State(s): State<AppState>, w: Write) -> ApiResult {
    let input = w.json::<ProductBody>()?.input(s.currency())?;
    let product = s.engine.run(w.keyed(cmd::create_product(input))).await?;
    product_reply(&s, &product, StatusCode::CREATED)
}

async fn update(State(s): State<AppState>, P(id): P<String>, w: Write) -> ApiResult {
    let id = parse_id(&id)?;
    let body = w.json::<ProductBody>()?;
    if let Some(body_id) = body.id
        && body_id != 0
        && u64::try_from(body_id).ok() != Some(id)
    {
        return Err(ApiError::invalid_body(format!("id {body_id} in the body does not match the path id {id}")));
    }
    let input = body.input(s.currency())?;
    let product = s.engine.run(w.keyed(cmd::update_product(id, input))).await.map_err(|e| match e.kind {
        kassa_engine::ErrorKind::NotFound => ApiError::not_found("product not found: product not found"),
        _ => e.into(),
    })?;
    product_reply(&s, &product, StatusCode::OK)
}

async fn delete(State(s): State<AppState>, P(id): P<String>, w: Write) -> ApiResult {
    let id = parse_id(&id)?;
    match s.engine.run(w.keyed(cmd::delete_product(id))).await {
        Ok(Deleted { existed: false }) => Err(ApiError::not_found("failed to delete product: product not found")),
        Ok(_) => Ok(ok(&MessageJson { message: "Product deleted successfully".into() })),
        Err(e) if e.kind == kassa_engine::ErrorKind::NotFound => Err(ApiError::not_found("failed to delete product: product not found")),
        Err(e) => Err(e.into()),
    }
}

async fn top5(State(s): State<AppState>) -> ApiResult {
    query(&s, ProductQuery::TopByPrice, Page::first(5))
}

async fn top10(State(s): State<AppState>) -> ApiResult {
    query(&s, ProductQuery::TopByPrice, Page::first(10))
}

async fn low1(State(s): State<AppState>, Q(p): Q<PageParams>) -> ApiResult {
    query(&s, ProductQuery::StockAtMost(1), p.product_page(&s.cfg, LimitDefault::Page)?)
}

async fn low10(State(s): State<AppState>, Q(p): Q<PageParams>) -> ApiResult {
    query(&s, ProductQuery::StockAtMost(10), p.product_page(&s.cfg, LimitDefault::Page)?)
}

async fn by_category(State(s): State<AppState>, P(category): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let key =
        PageKey { category: segment(&category, "category", TEXT_MAX)?.to_string(), page: p.product_page(&s.cfg, LimitDefault::Page)? };
    let (body, source) = s
        .pages
        .get_or_read(&s.engine, key, |key| list_body(&s, &ProductQuery::Category(key.category.clone()), key.page).map(Bytes::from))?;
    let mut response = super::json_body_response(StatusCode::OK, body);
    let cache = if source == Source::Hit { "HIT" } else { "MISS" };
    response.headers_mut().insert(X_CACHE, HeaderValue::from_static(cache));
    Ok(response)
}

/// Says whether a category page was answered from the page cache, as the old gateway's cache did.
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

async fn by_price(State(s): State<AppState>, P((min, max)): P<(String, String)>, Q(p): Q<PageParams>) -> ApiResult {
    let c = s.currency();
    let min = kassa_engine::money::parse_minor(&min, c)
        .map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid min price", "Min price must be a valid number"))?;
    let max = kassa_engine::money::parse_minor(&max, c)
        .map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid max price", "Max price must be a valid number"))?;
    query(&s, ProductQuery::PriceRange { min, max }, p.product_page(&s.cfg, LimitDefault::Page)?)
}

async fn search(State(s): State<AppState>, P(name): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let name = segment(&name, "name", TEXT_MAX)?.to_string();
    query(&s, ProductQuery::NameContains(name), p.product_page(&s.cfg, LimitDefault::Page)?)
}

// Both read every product (scans): off the listener's runtime.
async fn stats(State(s): State<AppState>) -> ApiResult {
    Ok(ok(&StatsJson::new(blocking(&s.engine, Engine::product_stats).await??, s.currency())))
}

async fn categories(State(s): State<AppState>) -> ApiResult {
    let c = s.currency();
    let categories: Vec<CategoryJson> = blocking(&s.engine, Engine::categories)
        .await??
        .into_iter()
        .map(|CategoryStats { name, product_count, average_price }| CategoryJson {
            name,
            product_count,
            average_price: Money::new(average_price, c),
        })
        .collect();
    Ok(ok(&CategoryList { count: categories.len(), categories }))
}

async fn by_stock(State(s): State<AppState>, P(stock): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let stock: i64 =
        stock.parse().map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid stock", "Stock must be a valid number"))?;
    query(&s, ProductQuery::StockEquals(stock), p.product_page(&s.cfg, LimitDefault::Page)?)
}

async fn random(State(s): State<AppState>, P(count): P<String>) -> ApiResult {
    let count: i64 =
        count.parse().map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid count", "Count must be a valid number"))?;
    if !(1..=RANDOM_MAX).contains(&count) {
        return Err(ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid count", format!("Count must be between 1 and {RANDOM_MAX}")));
    }
    let products = s.engine.random_products(count as usize)?;
    Ok(super::json_body_response(StatusCode::OK, product_json::list_body(&products, s.currency(), None)))
}

async fn by_created(State(s): State<AppState>, P((start, end)): P<(String, String)>, Q(p): Q<PageParams>) -> ApiResult {
    let from = wire::parse_time(&start).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let to = wire::parse_time(&end).map_err(|e| ApiError::bad_request(e.to_string()))?;
    query(&s, ProductQuery::CreatedBetween { from, to }, p.product_page(&s.cfg, LimitDefault::Page)?)
}
