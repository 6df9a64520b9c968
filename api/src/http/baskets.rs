//! Basket service endpoints (contract §3.2).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use kassa_engine::{Basket, BasketLine, limits, now_micros};
use kassa_engine::{Currency, Page, ProductQuery, cmd};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::basket_json::basket_body;
use super::products::MessageJson;
use super::spec::{Field, Kind, Param, USER_ID};
use super::{ApiResult, AppState, Caller, ID_MAX, P, TEXT_MAX, Write, def, ok, segment};
use crate::access::Access;
use crate::auth::authorize;
use crate::error::ApiError;
use crate::wire::{self, Money};

#[derive(Serialize, ToSchema)]
pub struct ItemJson {
    pub product_id: u64,
    pub name: String,
    #[schema(value_type = f64)]
    pub price: Money,
    pub quantity: i64,
    #[schema(value_type = f64)]
    pub subtotal: Money,
    pub category: String,
}

impl ItemJson {
    pub fn new(l: &BasketLine, c: Currency) -> ItemJson {
        ItemJson {
            product_id: l.product_id,
            name: l.name.clone(),
            price: Money::new(l.price, c),
            quantity: l.quantity,
            subtotal: Money::new(l.subtotal(), c),
            category: l.category.clone(),
        }
    }
}

/// A basket; `items` is `[]` when empty (the old service wrote `null`). The answers are written by
/// [`basket_json`](super::basket_json), which the tests hold to what this serializes to.
#[derive(Serialize, ToSchema)]
pub struct BasketJson {
    pub id: String,
    pub user_id: String,
    pub items: Vec<ItemJson>,
    #[schema(value_type = f64)]
    pub total: Money,
    pub item_count: i64,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
}

impl BasketJson {
    pub fn new(b: &Basket, c: Currency) -> BasketJson {
        BasketJson {
            id: b.id.clone(),
            user_id: b.user_id.clone(),
            items: b.lines.iter().map(|l| ItemJson::new(l, c)).collect(),
            total: Money::new(b.total(), c),
            item_count: b.item_count(),
            created_at: wire::rfc3339(b.created_at),
            updated_at: wire::rfc3339(b.updated_at),
            expires_at: wire::rfc3339(b.expires_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBasketBody {
    pub user_id: Option<String>,
}

/// Add-item body. `user_id` is optional (the path names the user); if sent it must match.
#[derive(Deserialize, ToSchema)]
pub struct AddItemBody {
    pub user_id: Option<String>,
    pub product_id: Option<i64>,
    pub quantity: Option<i64>,
}

/// Update-item body: the path names user and product; `quantity` 0 removes the line.
#[derive(Deserialize, ToSchema)]
pub struct UpdateItemBody {
    pub user_id: Option<String>,
    pub product_id: Option<i64>,
    pub quantity: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TotalJson {
    user_id: String,
    #[schema(value_type = f64)]
    total: Money,
    item_count: i64,
    currency: String,
}

#[derive(Serialize, ToSchema)]
pub struct CountJson {
    user_id: String,
    item_count: i64,
    unique_items: usize,
}

#[derive(Serialize, ToSchema)]
pub struct BasketStatsJson {
    user_id: String,
    total_items: i64,
    unique_items: usize,
    #[schema(value_type = f64)]
    total_value: Money,
    #[schema(value_type = f64)]
    average_item_price: Money,
    categories: usize,
    #[schema(value_type = f64)]
    most_expensive_item: Money,
    #[schema(value_type = f64)]
    least_expensive_item: Money,
}

#[derive(Serialize, ToSchema)]
pub struct ExpiryJson {
    user_id: String,
    expires_at: String,
    is_expired: bool,
    /// Go duration text, e.g. `23h59m58.123456s`.
    time_left: String,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryJson {
    user_id: String,
    history: Vec<ItemJson>,
    total_operations: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RecommendationsJson {
    user_id: String,
    recommendations: Vec<ItemJson>,
    reason: String,
}

const USER: Param = Param::path("user_id", Kind::Key(ID_MAX));
const PRODUCT: Param = Param::path("product_id", super::products::PRODUCT_ID);
const CATEGORY: Param = Param::path("category", Kind::Key(TEXT_MAX));

impl CreateBasketBody {
    pub(crate) const FIELDS: &[Field] = &[Field::required("user_id", USER_ID)];
}

impl AddItemBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("user_id", Kind::Text(ID_MAX)).note("The path names the user; when present and not empty it must match."),
        Field::required("product_id", super::products::PRODUCT_ID),
        Field::required("quantity", Kind::Int { min: 1, max: limits::QUANTITY_MAX })
            .note("Units to add; the line's new quantity must also stay within the bound and the product's stock."),
    ];
}

impl UpdateItemBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("user_id", Kind::Text(ID_MAX)).note("The path names the user; when present and not empty it must match."),
        Field::optional("product_id", Kind::Int { min: i64::MIN, max: i64::MAX })
            .note("The path names the product; when present and not 0 it must match."),
        Field::required("quantity", Kind::Int { min: 0, max: limits::QUANTITY_MAX }).note("The line's new quantity; 0 removes it."),
    ];
}

pub fn routes() -> Vec<RouteDef> {
    use Access::User;
    let t = "baskets";
    /// A basket that is read: missing (404), or expired and not yet swept (410).
    const READ: &[u16] = &[404, 410];
    vec![
        def(Method::POST, "/baskets", User, t, "Create the user's basket (or return the existing one)", create)
            .body("CreateBasketBody")
            .returns(201, "BasketJson"),
        def(Method::GET, "/baskets/{user_id}", User, t, "Get the user's basket", get)
            .returns(200, "BasketJson")
            .params(&[USER])
            .errors(READ),
        def(Method::DELETE, "/baskets/{user_id}", User, t, "Delete the user's basket", delete).returns(200, "MessageJson").params(&[USER]),
        def(Method::POST, "/baskets/{user_id}/items", User, t, "Add units of a product", add_item)
            .body("AddItemBody")
            .returns(200, "BasketJson")
            .params(&[USER])
            .errors(&[404]),
        def(Method::DELETE, "/baskets/{user_id}/items", User, t, "Remove every line", clear).returns(200, "BasketJson").params(&[USER]),
        def(Method::GET, "/baskets/{user_id}/items", User, t, "The basket's lines", items)
            .returns(200, "ItemJsonList")
            .params(&[USER])
            .errors(READ),
        def(Method::PUT, "/baskets/{user_id}/items/{product_id}", User, t, "Set a line's quantity (0 removes it)", update_item)
            .body("UpdateItemBody")
            .returns(200, "BasketJson")
            .params(&[USER, PRODUCT])
            .errors(&[404]),
        def(Method::DELETE, "/baskets/{user_id}/items/{product_id}", User, t, "Remove a line", remove_item)
            .returns(200, "BasketJson")
            .params(&[USER, PRODUCT])
            .errors(&[404]),
        def(Method::GET, "/baskets/{user_id}/total", User, t, "Total and unit count", total)
            .returns(200, "TotalJson")
            .params(&[USER])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/count", User, t, "Unit and line counts", count)
            .returns(200, "CountJson")
            .params(&[USER])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/category/{category}", User, t, "Lines of one category", by_category)
            .returns(200, "ItemJsonList")
            .params(&[USER, CATEGORY])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/stats", User, t, "Basket statistics", stats)
            .returns(200, "BasketStatsJson")
            .params(&[USER])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/expiry", User, t, "When the basket expires", expiry)
            .returns(200, "ExpiryJson")
            .params(&[USER])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/history", User, t, "The basket's lines as history", history)
            .returns(200, "HistoryJson")
            .params(&[USER])
            .errors(READ),
        def(Method::GET, "/baskets/{user_id}/recommendations", User, t, "Products from the basket's categories", recommendations)
            .returns(200, "RecommendationsJson")
            .params(&[USER]),
    ]
}

use super::RouteDef;

/// Validates the path user and checks the caller may touch that user's basket.
pub(crate) fn user<'a>(caller: &Caller, user_id: &'a str) -> Result<&'a str, ApiError> {
    let user_id = segment(user_id, "user_id", ID_MAX)?;
    authorize(caller.actor(), user_id)?;
    Ok(user_id)
}

fn load(s: &AppState, user_id: &str) -> Result<Basket, ApiError> {
    match s.engine.basket(user_id)? {
        Some(b) => Ok(b),
        None => Err(ApiError::not_found(format!("failed to get basket: basket not found for user {user_id}"))),
    }
}

fn basket_reply(s: &AppState, b: Basket, status: StatusCode) -> ApiResult {
    Ok(super::json_body_response(status, basket_body(&b, s.currency())))
}

fn product_id(value: Option<i64>) -> Result<u64, ApiError> {
    match value {
        None => Err(ApiError::invalid_body("product_id is required")),
        Some(v) if v > 0 => Ok(v as u64),
        Some(v) => Err(ApiError::invalid_body(format!("product_id must be a positive integer, got {v}"))),
    }
}

fn same_user(body_user: Option<&str>, path_user: &str) -> Result<(), ApiError> {
    match body_user {
        Some(u) if !u.is_empty() && u != path_user => {
            Err(ApiError::invalid_body(format!("user_id '{u}' in the body does not match the path")))
        }
        _ => Ok(()),
    }
}

async fn create(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let body: CreateBasketBody = w.json()?;
    let user_id = body.user_id.unwrap_or_default();
    if user_id.is_empty() {
        return Err(ApiError::invalid_body("user_id is required"));
    }
    let user_id = user(&caller, &user_id)?.to_string();
    let basket = s.engine.run(w.keyed(cmd::create_basket(user_id))).await?;
    basket_reply(&s, basket, StatusCode::CREATED)
}

async fn get(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let user_id = user(&caller, &user_id)?;
    basket_reply(&s, load(&s, user_id)?, StatusCode::OK)
}

async fn delete(State(s): State<AppState>, caller: Caller, P(user_id): P<String>, w: Write) -> ApiResult {
    let user_id = user(&caller, &user_id)?.to_string();
    s.engine.run(w.keyed(cmd::delete_basket(user_id))).await?;
    Ok(ok(&MessageJson { message: "Basket deleted successfully".into() }))
}

async fn add_item(State(s): State<AppState>, caller: Caller, P(user_id): P<String>, w: Write) -> ApiResult {
    let user_id = user(&caller, &user_id)?.to_string();
    let body: AddItemBody = w.json()?;
    same_user(body.user_id.as_deref(), &user_id)?;
    let product_id = product_id(body.product_id)?;
    let quantity = body.quantity.ok_or_else(|| ApiError::invalid_body("quantity is required"))?;
    let basket = s.engine.run(w.keyed(cmd::add_item(user_id, product_id, quantity))).await?;
    basket_reply(&s, basket, StatusCode::OK)
}

/// A product id in a path, read as the product routes read it.
fn path_product(text: &str) -> Result<u64, ApiError> {
    super::products::parse_id(text)
}

async fn update_item(State(s): State<AppState>, caller: Caller, P((user_id, pid)): P<(String, String)>, w: Write) -> ApiResult {
    let user_id = user(&caller, &user_id)?.to_string();
    let product_id = path_product(&pid)?;
    let body: UpdateItemBody = w.json()?;
    same_user(body.user_id.as_deref(), &user_id)?;
    if let Some(b) = body.product_id
        && b != 0
        && b as u64 != product_id
    {
        return Err(ApiError::invalid_body(format!("product_id {b} in the body does not match the path")));
    }
    let quantity = body.quantity.ok_or_else(|| ApiError::invalid_body("quantity is required"))?;
    let basket = s.engine.run(w.keyed(cmd::update_item(user_id, product_id, quantity))).await?;
    basket_reply(&s, basket, StatusCode::OK)
}

async fn remove_item(State(s): State<AppState>, caller: Caller, P((user_id, pid)): P<(String, String)>, w: Write) -> ApiResult {
    let user_id = user(&caller, &user_id)?.to_string();
    let product_id = path_product(&pid)?;
    let basket = s.engine.run(w.keyed(cmd::remove_item(user_id, product_id))).await?;
    basket_reply(&s, basket, StatusCode::OK)
}

async fn clear(State(s): State<AppState>, caller: Caller, P(user_id): P<String>, w: Write) -> ApiResult {
    let user_id = user(&caller, &user_id)?.to_string();
    let basket = s.engine.run(w.keyed(cmd::clear_basket(user_id))).await?;
    basket_reply(&s, basket, StatusCode::OK)
}

fn items_of(b: &Basket, c: Currency, keep: impl Fn(&BasketLine) -> bool) -> Vec<ItemJson> {
    b.lines.iter().filter(|l| keep(l)).map(|l| ItemJson::new(l, c)).collect()
}

async fn items(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    Ok(ok(&items_of(&b, s.currency(), |_| true)))
}

async fn total(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    let c = s.currency();
    Ok(ok(&TotalJson {
        user_id: b.user_id.clone(),
        total: Money::new(b.total(), c),
        item_count: b.item_count(),
        currency: c.code().to_string(),
    }))
}

async fn count(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    Ok(ok(&CountJson { user_id: b.user_id.clone(), item_count: b.item_count(), unique_items: b.lines.len() }))
}

async fn by_category(State(s): State<AppState>, caller: Caller, P((user_id, category)): P<(String, String)>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    let category = segment(&category, "category", TEXT_MAX)?;
    Ok(ok(&items_of(&b, s.currency(), |l| l.category == category)))
}

async fn stats(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    let c = s.currency();
    let lines = b.lines.len();
    let total = b.total();
    // Per line, not per unit, as the old service defined it; rounded half away from zero.
    let average = if lines == 0 {
        0
    } else {
        let (t, n) = (i128::from(total), lines as i128);
        i64::try_from((2 * t + n * t.signum()) / (2 * n)).unwrap_or(i64::MAX)
    };
    let mut categories: Vec<&str> = b.lines.iter().map(|l| l.category.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    Ok(ok(&BasketStatsJson {
        user_id: b.user_id.clone(),
        total_items: b.item_count(),
        unique_items: lines,
        total_value: Money::new(total, c),
        average_item_price: Money::new(average, c),
        categories: categories.len(),
        most_expensive_item: Money::new(b.lines.iter().map(|l| l.price).max().unwrap_or(0), c),
        least_expensive_item: Money::new(b.lines.iter().map(|l| l.price).min().unwrap_or(0), c),
    }))
}

async fn expiry(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    let left = b.expires_at - now_micros();
    Ok(ok(&ExpiryJson {
        user_id: b.user_id.clone(),
        expires_at: wire::rfc3339(b.expires_at),
        is_expired: left <= 0,
        time_left: wire::go_duration(left.max(0)),
    }))
}

async fn history(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let b = load(&s, user(&caller, &user_id)?)?;
    let history = items_of(&b, s.currency(), |_| true);
    Ok(ok(&HistoryJson { user_id: b.user_id.clone(), total_operations: history.len(), history }))
}

const RECOMMENDATIONS_MAX: usize = 5;

/// Real recommendations: available products from the basket's categories that are not in it yet;
/// the most expensive available products when the basket gives no hint.
async fn recommendations(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> Result<Response, ApiError> {
    let user_id = user(&caller, &user_id)?;
    let basket = s.engine.basket(user_id).ok().flatten();
    let in_basket = |id: u64| basket.as_ref().is_some_and(|b| b.lines.iter().any(|l| l.product_id == id));
    let mut picked = Vec::new();
    let mut categories: Vec<String> = basket.as_ref().map(|b| b.lines.iter().map(|l| l.category.clone()).collect()).unwrap_or_default();
    categories.dedup();
    for category in categories.iter().take(RECOMMENDATIONS_MAX) {
        for p in s.engine.products(&ProductQuery::Category(category.clone()), Page::first(50))? {
            if picked.len() < RECOMMENDATIONS_MAX
                && p.available > 0
                && !in_basket(p.id)
                && !picked.iter().any(|q: &std::sync::Arc<kassa_engine::Product>| q.id == p.id)
            {
                picked.push(p);
            }
        }
    }
    let reason = if picked.is_empty() {
        for p in s.engine.products(&ProductQuery::TopByPrice, Page::first(50))? {
            if picked.len() < RECOMMENDATIONS_MAX && p.available > 0 && !in_basket(p.id) {
                picked.push(p);
            }
        }
        "Popular products"
    } else {
        "Based on your current basket items"
    };
    let c = s.currency();
    let recommendations = picked
        .into_iter()
        .map(|p| ItemJson {
            product_id: p.id,
            price: Money::new(p.price, c),
            quantity: 1,
            subtotal: Money::new(p.price, c),
            name: p.name.clone(),
            category: p.category.clone(),
        })
        .collect();
    Ok(ok(&RecommendationsJson { user_id: user_id.to_string(), recommendations, reason: reason.to_string() }))
}
