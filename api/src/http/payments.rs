//! Payment service endpoints (contract §4.5).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use kassa_engine::{Cmd, Currency, Engine, EngineError, PaymentFilter, PaymentInput, PaymentStatus, cmd};
use kassa_engine::{MICROS_PER_SECOND, PAYMENT_METHODS, Payment, PaymentItem, Refund, now_micros};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::{Field, Kind, LIMIT, LONG, LimitDefault, OFFSET, PAGED, Param, SHORT, USER_ID};
use super::{ApiResult, AppState, Caller, ID_MAX, P, PageParams, Pairs, Q, RouteDef, TEXT_MAX, Write, def, ok, pairs_from, segment};
use crate::access::Access;
use crate::auth::authorize;
use crate::error::ApiError;
use crate::scan::{all_pages, blocking};
use crate::wire::{self, GoFloat, Money, MoneyText};

#[derive(Serialize, ToSchema)]
pub struct PaymentItemJson {
    id: String,
    product_id: u64,
    name: String,
    quantity: i64,
    #[schema(value_type = f64)]
    price: Money,
    #[schema(value_type = f64)]
    subtotal: Money,
    category: String,
    created_at: String,
}

impl PaymentItemJson {
    fn new(i: &PaymentItem, c: Currency) -> PaymentItemJson {
        PaymentItemJson {
            id: i.id.clone(),
            product_id: i.product_id,
            name: i.name.clone(),
            quantity: i.quantity,
            price: Money::new(i.price, c),
            subtotal: Money::new(i.subtotal(), c),
            category: i.category.clone(),
            created_at: wire::rfc3339(i.created_at),
        }
    }
}

/// One refund of a payment (`GET /payments/{id}/refunds`).
#[derive(Serialize, ToSchema)]
pub struct RefundJson<'a> {
    id: &'a str,
    payment_id: &'a str,
    #[schema(value_type = f64)]
    amount: Money,
    reason: &'a str,
    /// `pending` (with the provider), `succeeded` or `failed`.
    status: &'static str,
    /// The provider's id of the refund, when Kassa refunded through the provider.
    provider_refund_id: &'a str,
    failure_reason: &'a str,
    created_at: String,
    updated_at: String,
}

impl<'a> RefundJson<'a> {
    fn new(p: &'a Payment, r: &'a Refund, c: Currency) -> RefundJson<'a> {
        RefundJson {
            id: &r.id,
            payment_id: &p.id,
            amount: Money::new(r.amount, c),
            reason: &r.reason,
            status: r.status.as_str(),
            provider_refund_id: &r.provider_refund_id,
            failure_reason: &r.failure_reason,
            created_at: wire::rfc3339(r.created_at),
            updated_at: wire::rfc3339(r.updated_at),
        }
    }
}

/// A payment as the old API showed it, plus refund and failure details at the end.
#[derive(Serialize, ToSchema)]
pub struct PaymentJson<'a> {
    id: &'a str,
    user_id: &'a str,
    basket_id: &'a str,
    #[schema(value_type = f64)]
    amount: Money,
    currency: &'a str,
    status: &'static str,
    method: &'a str,
    provider: &'a str,
    provider_id: &'a str,
    description: &'a str,
    #[schema(value_type = Object)]
    metadata: Pairs<'a>,
    items: Vec<PaymentItemJson>,
    created_at: String,
    updated_at: String,
    processed_at: Option<String>,
    expires_at: Option<String>,
    #[schema(value_type = f64)]
    refunded_amount: Money,
    refund_reason: &'a str,
    refund_id: &'a str,
    failure_reason: &'a str,
    error_code: &'a str,
    /// The stored payment method it was charged with, or empty.
    payment_method_id: &'a str,
}

fn currency_of(p: &Payment, shop: Currency) -> Currency {
    Currency::from_code(&p.currency).unwrap_or(shop)
}

impl<'a> PaymentJson<'a> {
    pub fn new(p: &'a Payment, shop: Currency) -> PaymentJson<'a> {
        let c = currency_of(p, shop);
        PaymentJson {
            id: &p.id,
            user_id: &p.user_id,
            basket_id: &p.basket_id,
            amount: Money::new(p.amount, c),
            currency: &p.currency,
            status: p.status.as_str(),
            method: &p.method,
            provider: &p.provider,
            provider_id: &p.provider_id,
            description: &p.description,
            metadata: Pairs(&p.metadata),
            items: p.items.iter().map(|i| PaymentItemJson::new(i, c)).collect(),
            created_at: wire::rfc3339(p.created_at),
            updated_at: wire::rfc3339(p.updated_at),
            processed_at: p.processed_at.map(wire::rfc3339),
            expires_at: p.expires_at.map(wire::rfc3339),
            refunded_amount: Money::new(p.refunded_amount, c),
            refund_reason: &p.refund_reason,
            refund_id: &p.refund_id,
            failure_reason: &p.failure_reason,
            error_code: &p.error_code,
            payment_method_id: &p.payment_method_id,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreatePaymentBody {
    user_id: Option<String>,
    /// Optional; the payment is always for the user's current basket.
    basket_id: Option<String>,
    method: Option<String>,
    provider: Option<String>,
    currency: Option<String>,
    description: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The provider token to charge with (`tok_…`); required for a provider Kassa charges through.
    token: Option<String>,
    /// A stored payment method of the user, instead of `token`.
    payment_method_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdatePaymentBody {
    payment_id: Option<String>,
    status: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ProcessPaymentBody {
    payment_id: Option<String>,
    provider_id: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct RefundPaymentBody {
    payment_id: Option<String>,
    /// Absent or 0 = the full amount.
    #[schema(value_type = f64)]
    amount: Option<MoneyText>,
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentStatsJson {
    total_payments: u64,
    #[schema(value_type = f64)]
    total_amount: Money,
    completed_payments: u64,
    failed_payments: u64,
    pending_payments: u64,
    #[schema(value_type = f64)]
    average_amount: Money,
}

#[derive(Serialize, ToSchema)]
pub struct AnalyticsJson {
    total_payments: u64,
    #[schema(value_type = f64)]
    total_revenue: Money,
    #[schema(value_type = f64)]
    success_rate: GoFloat,
    #[schema(value_type = f64)]
    average_amount: Money,
    top_payment_method: String,
    top_provider: String,
    daily_transactions: u64,
    #[schema(value_type = f64)]
    monthly_revenue: Money,
}

#[derive(Serialize, ToSchema)]
pub struct SummaryJson {
    total_payments: u64,
    #[schema(value_type = f64)]
    total_revenue: Money,
    pending_payments: u64,
    completed_payments: u64,
    failed_payments: u64,
    refunded_payments: u64,
    #[schema(value_type = f64)]
    success_rate: GoFloat,
    #[schema(value_type = f64)]
    average_amount: Money,
}

#[derive(Serialize, ToSchema)]
pub struct MethodsJson {
    methods: Vec<String>,
    count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ProvidersJson {
    providers: Vec<String>,
    count: usize,
}

pub(crate) fn statuses() -> Vec<&'static str> {
    PaymentStatus::ALL.iter().map(|s| s.as_str()).collect()
}

/// The payment methods the engine accepts.
pub(crate) fn payment_methods() -> Vec<&'static str> {
    PAYMENT_METHODS.to_vec()
}

/// The statuses an administrator may set: every one but `pending`, which the engine refuses.
fn settable_statuses() -> Vec<&'static str> {
    PaymentStatus::ALL.iter().filter(|s| **s != PaymentStatus::Pending).map(|s| s.as_str()).collect()
}

const ID: Param = Param::path("id", Kind::Key(ID_MAX));
const USER: Param = Param::path("user_id", Kind::Key(ID_MAX));
const STATUS: Param = Param::path("status", Kind::OneOf(statuses));
const START: Param = Param::path("start", Kind::Time);
const END: Param = Param::path("end", Kind::Time);
const MIN: Param = Param::path("min", Kind::AmountText);
const MAX: Param = Param::path("max", Kind::AmountText);
const METHOD: Param = Param::path("method", Kind::Key(TEXT_MAX));
const PROVIDER: Param = Param::path("provider", Kind::Key(TEXT_MAX));

impl CreatePaymentBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::required("user_id", USER_ID),
        Field::optional("basket_id", SHORT).note("Ignored: a payment is always for the user's current basket."),
        Field::optional("method", Kind::OneOf(payment_methods)).note("Required unless payment_method_id names a stored method."),
        Field::optional("provider", SHORT).note("Required unless payment_method_id names a stored method."),
        Field::optional("currency", Kind::Text(3)).note("Empty or the shop currency (any letter case)."),
        Field::optional("description", LONG),
        Field::optional("metadata", Kind::StringMap),
        Field::optional("token", SHORT).note("A provider token, never a card number; required when Kassa charges through the provider."),
        Field::optional("payment_method_id", Kind::Text(ID_MAX)).note("A stored payment method of the user: charged with its token."),
    ];
}

impl UpdatePaymentBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("payment_id", Kind::Text(ID_MAX)).note("The path names the payment; when present and not empty it must match."),
        Field::required("status", Kind::OneOf(settable_statuses)),
        Field::optional("metadata", Kind::StringMap).note("Replaces the metadata when the status change is accepted."),
    ];
}

impl ProcessPaymentBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("payment_id", Kind::Text(ID_MAX)).note("The path names the payment; when present and not empty it must match."),
        Field::optional("provider_id", SHORT),
    ];
}

impl RefundPaymentBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::optional("payment_id", Kind::Text(ID_MAX)).note("The path names the payment; when present and not empty it must match."),
        Field::optional("amount", Kind::Amount { min_minor: 0, max_minor: i64::MAX })
            .note("Absent or 0 = the whole amount; at most what is left to refund."),
        Field::optional("reason", LONG),
    ];
}

pub fn routes() -> Vec<RouteDef> {
    use Access::{Admin, User};
    let t = "payments";
    /// A payment that is loaded first (404) and whose status must allow the step (409).
    const STEP: &[u16] = &[404, 409];
    vec![
        def(Method::POST, "/payments", User, t, "Check out the user's basket: reserves stock, creates a pending payment", create)
            .body("CreatePaymentBody")
            .returns(201, "PaymentJson")
            .errors(&[404]),
        def(Method::GET, "/payments", Admin, t, "All payments, newest first", list_all).returns(200, "PaymentJsonList").params(&PAGED),
        def(Method::GET, "/payments/{id}", User, t, "Get a payment", get).returns(200, "PaymentJson").params(&[ID]).errors(&[404]),
        def(Method::PUT, "/payments/{id}", Admin, t, "Administrative status change", update)
            .body("UpdatePaymentBody")
            .returns(200, "PaymentJson")
            .params(&[ID])
            .errors(&[404, 409, 410]),
        def(Method::POST, "/payments/{id}/process", User, t, "Complete a pending payment: sells the stock, clears the basket", process)
            .optional_body("ProcessPaymentBody")
            .returns(200, "PaymentJson")
            .params(&[ID])
            .errors(&[404, 409, 410]),
        def(Method::POST, "/payments/{id}/refund", Admin, t, "Refund a completed payment", refund)
            .optional_body("RefundPaymentBody")
            .returns(200, "PaymentJson")
            .params(&[ID])
            .errors(STEP),
        def(Method::POST, "/payments/{id}/cancel", User, t, "Cancel a pending payment: releases the stock", cancel)
            .returns(200, "PaymentJson")
            .params(&[ID])
            .errors(STEP),
        def(Method::POST, "/payments/{id}/retry", User, t, "Retry a failed payment", retry)
            .returns(200, "PaymentJson")
            .params(&[ID])
            .errors(STEP),
        def(Method::GET, "/payments/{id}/items", User, t, "A payment's items", items)
            .returns(200, "PaymentItemJsonList")
            .params(&[ID])
            .errors(&[404]),
        def(Method::GET, "/payments/{id}/refunds", User, t, "A payment's refunds, oldest first", refunds)
            .returns(200, "RefundJsonList")
            .params(&[ID])
            .errors(&[404]),
        def(Method::GET, "/payments/user/{user_id}", User, t, "A user's payments, newest first", by_user)
            .returns(200, "PaymentJsonList")
            .params(&[USER, LIMIT, OFFSET]),
        def(Method::GET, "/payments/stats/{user_id}", User, t, "A user's payment statistics", user_stats)
            .returns(200, "PaymentStatsJson")
            .params(&[USER]),
        def(Method::GET, "/payments/status/{status}", Admin, t, "Payments with a status", by_status)
            .returns(200, "PaymentJsonList")
            .params(&[STATUS, LIMIT, OFFSET]),
        def(Method::GET, "/payments/date/{start}/{end}", Admin, t, "Payments created in a time range (inclusive)", by_date)
            .returns(200, "PaymentJsonList")
            .params(&[START, END, LIMIT, OFFSET]),
        def(Method::GET, "/payments/amount/{min}/{max}", Admin, t, "Payments in an amount range (inclusive)", by_amount)
            .returns(200, "PaymentJsonList")
            .params(&[MIN, MAX, LIMIT, OFFSET]),
        def(Method::GET, "/payments/method/{method}", Admin, t, "Payments by method", by_method)
            .returns(200, "PaymentJsonList")
            .params(&[METHOD, LIMIT, OFFSET]),
        def(Method::GET, "/payments/provider/{provider}", Admin, t, "Payments by provider", by_provider)
            .returns(200, "PaymentJsonList")
            .params(&[PROVIDER, LIMIT, OFFSET]),
        def(Method::GET, "/payments/analytics", Admin, t, "Payment analytics", analytics).returns(200, "AnalyticsJson"),
        def(Method::GET, "/payments/methods", Admin, t, "Distinct payment methods", methods).returns(200, "MethodsJson"),
        def(Method::GET, "/payments/providers", Admin, t, "Distinct providers", providers).returns(200, "ProvidersJson"),
        def(Method::GET, "/payments/summary", Admin, t, "Payment summary", summary).returns(200, "SummaryJson"),
    ]
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("failed to get payment: payment not found: {id}"))
}

/// Loads a payment and checks the caller owns it.
fn owned(s: &AppState, caller: &Caller, id: &str) -> Result<Payment, ApiError> {
    let id = segment(id, "payment id", ID_MAX)?;
    let payment = s.engine.payment(id)?.ok_or_else(|| not_found(id))?;
    authorize(caller.actor(), &payment.user_id)?;
    Ok(payment)
}

fn payment_reply(s: &AppState, p: Payment, status: StatusCode) -> ApiResult {
    Ok(super::json_response(status, &PaymentJson::new(&p, s.currency())))
}

fn list_reply(s: &AppState, payments: &[Payment]) -> ApiResult {
    let c = s.currency();
    let list: Vec<PaymentJson> = payments.iter().map(|p| PaymentJson::new(p, c)).collect();
    Ok(ok(&list))
}

fn same_payment(body: Option<&str>, path: &str) -> Result<(), ApiError> {
    match body {
        Some(b) if !b.is_empty() && b != path => {
            Err(ApiError::invalid_body(format!("payment_id '{b}' in the body does not match the path")))
        }
        _ => Ok(()),
    }
}

/// A missing payment gets the old envelope text.
fn engine_err(id: &str) -> impl Fn(kassa_engine::EngineError) -> ApiError + '_ {
    move |e| match e.refusal {
        Some(kassa_engine::Refusal::PaymentNotFound { .. }) => not_found(id),
        _ => e.into(),
    }
}

async fn create(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let body: CreatePaymentBody = w.json()?;
    let user_id = body.user_id.unwrap_or_default();
    if user_id.is_empty() {
        return Err(ApiError::invalid_body("user_id is required"));
    }
    let user_id = segment(&user_id, "user_id", ID_MAX)?.to_string();
    authorize(caller.actor(), &user_id)?;
    // A stored method brings its own type and provider.
    let payment_method_id = body.payment_method_id.unwrap_or_default();
    let method = body.method.unwrap_or_default();
    if method.is_empty() && payment_method_id.is_empty() {
        return Err(ApiError::invalid_body("method is required"));
    }
    let provider = body.provider.unwrap_or_default();
    if provider.is_empty() && payment_method_id.is_empty() {
        return Err(ApiError::invalid_body("provider is required"));
    }
    let input = PaymentInput {
        user_id,
        basket_id: body.basket_id.unwrap_or_default(),
        method,
        provider,
        currency: body.currency.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
        metadata: pairs_from(body.metadata)?.unwrap_or_default(),
        token: body.token.unwrap_or_default(),
        payment_method_id,
    };
    let payment = s.engine.run(w.keyed(cmd::create_payment(input))).await?;
    payment_reply(&s, payment, StatusCode::CREATED)
}

async fn list_all(State(s): State<AppState>, Q(p): Q<PageParams>) -> ApiResult {
    filtered(&s, PaymentFilter::default(), &p).await
}

async fn get(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> ApiResult {
    let p = owned(&s, &caller, &id)?;
    Ok(ok(&PaymentJson::new(&p, s.currency())))
}

/// Runs a step on payment `id` and answers the payment; a payment gone meanwhile gets the old 404 text.
/// A payment still `processing` (its provider has not said yet) is answered 202.
async fn step(s: &AppState, w: &Write, id: &str, command: Cmd<Payment>) -> ApiResult {
    let payment = s.engine.run(w.keyed(command)).await.map_err(engine_err(id))?;
    let status = if payment.status == PaymentStatus::Processing { StatusCode::ACCEPTED } else { StatusCode::OK };
    payment_reply(s, payment, status)
}

/// The shape of a user's step on their own payment: load it (404, or 403 when it is another user's),
/// make the command of it (which may read the body), run it.
async fn owner_step(
    s: &AppState,
    caller: &Caller,
    id: &str,
    w: &Write,
    command: impl FnOnce(&Payment) -> Result<Cmd<Payment>, ApiError>,
) -> ApiResult {
    let payment = owned(s, caller, id)?;
    step(s, w, &payment.id, command(&payment)?).await
}

/// The shape of an administrator's step (the route's access is `admin`): the request is checked first,
/// then a payment that does not exist is a 404, then the command runs.
async fn admin_step(s: &AppState, w: &Write, id: &str, command: Cmd<Payment>) -> ApiResult {
    if s.engine.payment(id)?.is_none() {
        return Err(not_found(id));
    }
    step(s, w, id, command).await
}

async fn update(State(s): State<AppState>, P(id): P<String>, w: Write) -> ApiResult {
    let id = segment(&id, "payment id", ID_MAX)?.to_string();
    let body: UpdatePaymentBody = w.json()?;
    same_payment(body.payment_id.as_deref(), &id)?;
    let status_text = body.status.unwrap_or_default();
    if status_text.is_empty() {
        return Err(ApiError::invalid_body("status is required"));
    }
    let status =
        PaymentStatus::parse(&status_text).ok_or_else(|| ApiError::bad_request(format!("invalid payment status: {status_text}")))?;
    let metadata = pairs_from(body.metadata)?;
    admin_step(&s, &w, &id, cmd::update_payment(id.clone(), status, metadata)).await
}

async fn refund(State(s): State<AppState>, P(id): P<String>, w: Write) -> ApiResult {
    let id = segment(&id, "payment id", ID_MAX)?.to_string();
    let body: RefundPaymentBody = w.json_or_default()?;
    same_payment(body.payment_id.as_deref(), &id)?;
    let amount = match &body.amount {
        Some(a) => {
            let minor = a.minor(s.currency()).map_err(|e| ApiError::invalid_body(e.to_string()))?;
            if minor < 0 {
                return Err(ApiError::invalid_body("refund amount cannot be negative"));
            }
            (minor > 0).then_some(minor)
        }
        None => None,
    };
    admin_step(&s, &w, &id, cmd::refund_payment(id.clone(), amount, body.reason.unwrap_or_default())).await
}

async fn process(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    owner_step(&s, &caller, &id, &w, |p| {
        let body: ProcessPaymentBody = w.json_or_default()?;
        same_payment(body.payment_id.as_deref(), &p.id)?;
        Ok(cmd::process_payment(p.id.clone(), body.provider_id.unwrap_or_default()))
    })
    .await
}

async fn cancel(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    owner_step(&s, &caller, &id, &w, |p| Ok(cmd::cancel_payment(p.id.clone()))).await
}

async fn retry(State(s): State<AppState>, caller: Caller, P(id): P<String>, w: Write) -> ApiResult {
    owner_step(&s, &caller, &id, &w, |p| Ok(cmd::retry_payment(p.id.clone()))).await
}

async fn items(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> ApiResult {
    let p = owned(&s, &caller, &id)?;
    let c = currency_of(&p, s.currency());
    let items: Vec<PaymentItemJson> = p.items.iter().map(|i| PaymentItemJson::new(i, c)).collect();
    Ok(ok(&items))
}

async fn refunds(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> ApiResult {
    let p = owned(&s, &caller, &id)?;
    let c = currency_of(&p, s.currency());
    let refunds: Vec<RefundJson> = p.refunds.iter().map(|r| RefundJson::new(&p, r, c)).collect();
    Ok(ok(&refunds))
}

async fn by_user(State(s): State<AppState>, caller: Caller, P(user_id): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let user_id = super::baskets::user(&caller, &user_id)?;
    let page = p.page(&s.cfg, LimitDefault::Page)?;
    list_reply(&s, &s.engine.payments_by_user(user_id, page)?)
}

/// Every payment of a user (bounded by the engine's deepest page). A scan: run it with `blocking`.
pub(crate) fn all_of_user(engine: &Engine, user_id: &str) -> Result<Vec<Payment>, EngineError> {
    all_pages(usize::MAX, |page| engine.payments_by_user(user_id, page))
}

fn rounded_average(sum: i64, count: u64) -> i64 {
    if count == 0 {
        return 0;
    }
    let (sum, count) = (i128::from(sum), i128::from(count));
    i64::try_from((2 * sum + count * sum.signum()) / (2 * count)).unwrap_or(i64::MAX)
}

/// Stats over a set of payments (the old definitions: sums over every status).
pub(crate) struct Tally {
    pub total: u64,
    pub amount: i64,
    pub completed: u64,
    pub failed: u64,
    pub pending: u64,
}

pub(crate) fn tally(payments: &[Payment]) -> Tally {
    let mut t = Tally { total: 0, amount: 0, completed: 0, failed: 0, pending: 0 };
    for p in payments {
        t.total += 1;
        t.amount = t.amount.saturating_add(p.amount);
        match p.status {
            PaymentStatus::Completed => t.completed += 1,
            PaymentStatus::Failed => t.failed += 1,
            PaymentStatus::Pending => t.pending += 1,
            _ => {}
        }
    }
    t
}

pub(crate) fn average(t: &Tally) -> i64 {
    rounded_average(t.amount, t.total)
}

async fn user_stats(State(s): State<AppState>, caller: Caller, P(user_id): P<String>) -> ApiResult {
    let user_id = super::baskets::user(&caller, &user_id)?.to_string();
    let t = tally(&blocking(&s.engine, move |e| all_of_user(e, &user_id)).await??);
    let c = s.currency();
    Ok(ok(&PaymentStatsJson {
        total_payments: t.total,
        total_amount: Money::new(t.amount, c),
        completed_payments: t.completed,
        failed_payments: t.failed,
        pending_payments: t.pending,
        average_amount: Money::new(average(&t), c),
    }))
}

/// A page of the payments that match `filter`: the engine reads every payment for it (a scan).
async fn filtered(s: &AppState, filter: PaymentFilter, p: &PageParams) -> ApiResult {
    let page = p.page(&s.cfg, LimitDefault::Page)?;
    list_reply(s, &blocking(&s.engine, move |e| e.payments(&filter, page)).await??)
}

async fn by_status(State(s): State<AppState>, P(status): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let status = PaymentStatus::parse(&status)
        .ok_or_else(|| ApiError::bad_request(format!("invalid payment status: {}", status.chars().take(64).collect::<String>())))?;
    filtered(&s, PaymentFilter { status: Some(status), ..Default::default() }, &p).await
}

async fn by_date(State(s): State<AppState>, P((start, end)): P<(String, String)>, Q(p): Q<PageParams>) -> ApiResult {
    let from = wire::parse_time(&start).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let to = wire::parse_time(&end).map_err(|e| ApiError::bad_request(e.to_string()))?;
    filtered(&s, PaymentFilter { created_from: Some(from), created_to: Some(to), ..Default::default() }, &p).await
}

async fn by_amount(State(s): State<AppState>, P((min, max)): P<(String, String)>, Q(p): Q<PageParams>) -> ApiResult {
    let c = s.currency();
    let min = kassa_engine::money::parse_minor(&min, c)
        .map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid min amount", "Min amount must be a valid number"))?;
    let max = kassa_engine::money::parse_minor(&max, c)
        .map_err(|_| ApiError::labelled(StatusCode::BAD_REQUEST, "Invalid max amount", "Max amount must be a valid number"))?;
    filtered(&s, PaymentFilter { amount_min: Some(min), amount_max: Some(max), ..Default::default() }, &p).await
}

async fn by_method(State(s): State<AppState>, P(method): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let method = segment(&method, "method", TEXT_MAX)?.to_string();
    filtered(&s, PaymentFilter { method: Some(method), ..Default::default() }, &p).await
}

async fn by_provider(State(s): State<AppState>, P(provider): P<String>, Q(p): Q<PageParams>) -> ApiResult {
    let provider = segment(&provider, "provider", TEXT_MAX)?.to_string();
    filtered(&s, PaymentFilter { provider: Some(provider), ..Default::default() }, &p).await
}

/// Aggregates over every payment (an admin report; the scan is bounded by the data set).
struct Report {
    total: u64,
    by_status: HashMap<PaymentStatus, u64>,
    revenue: i64,
    completed: u64,
    methods: HashMap<String, u64>,
    providers: HashMap<String, u64>,
    daily: u64,
    monthly_revenue: i64,
}

fn month_start(now: i64) -> i64 {
    let day = now.div_euclid(86_400 * MICROS_PER_SECOND);
    let today = wire::rfc3339(day * 86_400 * MICROS_PER_SECOND);
    wire::parse_time(&format!("{}-01", &today[..7])).unwrap_or(0)
}

/// A scan of every payment: run it with `blocking`.
fn report(engine: &Engine) -> Result<Report, EngineError> {
    let now = now_micros();
    let day_ago = now - 86_400 * MICROS_PER_SECOND;
    let month = month_start(now);
    let mut r = Report {
        total: 0,
        by_status: HashMap::new(),
        revenue: 0,
        completed: 0,
        methods: HashMap::new(),
        providers: HashMap::new(),
        daily: 0,
        monthly_revenue: 0,
    };
    engine.for_each_payment(&mut |p| {
        r.total += 1;
        *r.by_status.entry(p.status).or_default() += 1;
        *r.methods.entry(p.method.clone()).or_default() += 1;
        *r.providers.entry(p.provider.clone()).or_default() += 1;
        if p.created_at >= day_ago {
            r.daily += 1;
        }
        if p.status == PaymentStatus::Completed {
            r.completed += 1;
            r.revenue = r.revenue.saturating_add(p.amount);
            if p.created_at >= month {
                r.monthly_revenue = r.monthly_revenue.saturating_add(p.amount);
            }
        }
        true
    })?;
    Ok(r)
}

impl Report {
    fn success_rate(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.completed as f64 / self.total as f64 * 100.0 }
    }
    fn count(&self, s: PaymentStatus) -> u64 {
        self.by_status.get(&s).copied().unwrap_or(0)
    }
}

/// Most frequent value; ties go to the alphabetically first, so the answer is stable.
fn top(counts: &HashMap<String, u64>) -> String {
    counts.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(k, _)| k.clone()).unwrap_or_default()
}

fn sorted_keys(counts: HashMap<String, u64>) -> Vec<String> {
    let mut keys: Vec<String> = counts.into_keys().collect();
    keys.sort();
    keys
}

async fn analytics(State(s): State<AppState>) -> ApiResult {
    let r = blocking(&s.engine, report).await??;
    let c = s.currency();
    Ok(ok(&AnalyticsJson {
        total_payments: r.total,
        total_revenue: Money::new(r.revenue, c),
        success_rate: GoFloat(r.success_rate()),
        average_amount: Money::new(rounded_average(r.revenue, r.completed), c),
        top_payment_method: top(&r.methods),
        top_provider: top(&r.providers),
        daily_transactions: r.daily,
        monthly_revenue: Money::new(r.monthly_revenue, c),
    }))
}

async fn methods(State(s): State<AppState>) -> ApiResult {
    let methods = sorted_keys(blocking(&s.engine, report).await??.methods);
    Ok(ok(&MethodsJson { count: methods.len(), methods }))
}

async fn providers(State(s): State<AppState>) -> ApiResult {
    let providers = sorted_keys(blocking(&s.engine, report).await??.providers);
    Ok(ok(&ProvidersJson { count: providers.len(), providers }))
}

async fn summary(State(s): State<AppState>) -> ApiResult {
    let r = blocking(&s.engine, report).await??;
    let c = s.currency();
    Ok(ok(&SummaryJson {
        total_payments: r.total,
        total_revenue: Money::new(r.revenue, c),
        pending_payments: r.count(PaymentStatus::Pending),
        completed_payments: r.completed,
        failed_payments: r.count(PaymentStatus::Failed),
        refunded_payments: r.count(PaymentStatus::Refunded),
        success_rate: GoFloat(r.success_rate()),
        average_amount: Money::new(rounded_average(r.revenue, r.completed), c),
    }))
}
