//! Stored payment methods (the sibling payment service's `/payment-methods`): add, list, make default,
//! delete, for the user named by `user_id` (the caller, or anyone for an administrator). Tokens go in and
//! are never answered; card numbers are refused.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use kassa_engine::{PaymentMethod, PaymentMethodInput, cmd};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::{Field, Kind, Param, SHORT, USER_ID};
use super::{ApiResult, AppState, Caller, ID_MAX, P, Q, RouteDef, Write, def, json_response, ok, segment};
use crate::access::Access;
use crate::error::ApiError;
use crate::wire;

/// A stored method as the sibling service answered it; the token is never shown.
#[derive(Serialize, ToSchema)]
pub struct PaymentMethodJson<'a> {
    id: &'a str,
    user_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_four_digits: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_month: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_year: Option<u16>,
    is_default: bool,
    /// Always true: a deleted method is gone, not inactive.
    is_active: bool,
    created_at: String,
    updated_at: String,
}

impl<'a> PaymentMethodJson<'a> {
    fn new(m: &'a PaymentMethod) -> PaymentMethodJson<'a> {
        PaymentMethodJson {
            id: &m.id,
            user_id: &m.user_id,
            kind: &m.kind,
            provider: &m.provider,
            last_four_digits: (!m.last_four.is_empty()).then_some(m.last_four.as_str()),
            expiry_month: (m.expiry_month != 0).then_some(m.expiry_month),
            expiry_year: (m.expiry_year != 0).then_some(m.expiry_year),
            is_default: m.is_default,
            is_active: true,
            created_at: wire::rfc3339(m.created_at),
            updated_at: wire::rfc3339(m.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PaymentMethodList<'a> {
    payment_methods: Vec<PaymentMethodJson<'a>>,
    total: usize,
}

#[derive(Deserialize, ToSchema)]
pub struct AddPaymentMethodBody {
    user_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    provider: Option<String>,
    token: Option<String>,
    last_four_digits: Option<String>,
    expiry_month: Option<u8>,
    expiry_year: Option<u16>,
    is_default: Option<bool>,
}

impl AddPaymentMethodBody {
    pub(crate) const FIELDS: &[Field] = &[
        Field::required("user_id", USER_ID).note("Whose method: the caller's own, or anyone's for an administrator."),
        Field::required("type", Kind::OneOf(super::payments::payment_methods)),
        Field::required("provider", SHORT),
        Field::required("token", SHORT).note("The provider's token for the card (`tok_…`, `pm_…`), never its number."),
        Field::optional("last_four_digits", Kind::Digits(4)).note("Shown back to the user."),
        Field::optional("expiry_month", Kind::Int { min: 1, max: 12 }).note("With expiry_year; an expired card is refused."),
        Field::optional("expiry_year", Kind::Int { min: 2000, max: 2999 }),
        Field::optional("is_default", Kind::Bool).note("A user's first method is the default anyway."),
    ];
}

#[derive(Deserialize)]
pub struct UserQuery {
    user_id: Option<String>,
}

const ID: Param = Param::path("id", Kind::Key(ID_MAX));
const USER: Param =
    Param::query("user_id", Kind::Key(ID_MAX)).required().note("Whose methods: the caller's own, or anyone's for an administrator.");

pub fn routes() -> Vec<RouteDef> {
    use Access::User;
    let t = "payment-methods";
    vec![
        def(Method::POST, "/payment-methods", User, t, "Store a payment method (a provider token) for the user", add)
            .body("AddPaymentMethodBody")
            .returns(201, "PaymentMethodJson")
            .errors(&[409]),
        def(Method::GET, "/payment-methods", User, t, "The user's stored payment methods, the default first", list)
            .returns(200, "PaymentMethodList")
            .params(&[USER]),
        def(Method::PUT, "/payment-methods/{id}/default", User, t, "Make a stored method the user's default (and no other)", set_default)
            .returns(200, "PaymentMethodJson")
            .params(&[ID, USER])
            .errors(&[404]),
        def(Method::POST, "/payment-methods/{id}/set-default", User, t, "The same, as the sibling payment service named it", set_default)
            .returns(200, "PaymentMethodJson")
            .params(&[ID, USER])
            .errors(&[404]),
        def(Method::DELETE, "/payment-methods/{id}", User, t, "Forget a stored method; the oldest one left becomes the default", delete)
            .returns(204, "")
            .params(&[ID, USER])
            .errors(&[404]),
    ]
}

/// Whose methods a request is about, checked: the caller's own, or anyone's for an administrator.
fn whose<'a>(caller: &Caller, named: Option<&'a str>) -> Result<&'a str, ApiError> {
    let user = named.ok_or_else(|| ApiError::bad_request("user_id is required"))?;
    super::baskets::user(caller, user)
}

/// An expiry field: absent (0), or within `range`.
fn expiry<T: Copy + PartialOrd + Default + std::fmt::Display>(
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
    field: &str,
) -> Result<T, ApiError> {
    match value {
        None => Ok(T::default()),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => Err(ApiError::invalid_body(format!("{field} must be {} to {}, not {v}", range.start(), range.end()))),
    }
}

async fn add(State(s): State<AppState>, caller: Caller, w: Write) -> ApiResult {
    let body: AddPaymentMethodBody = w.json()?;
    let user_id = whose(&caller, body.user_id.as_deref())?.to_string();
    let required = |value: Option<String>, field: &str| {
        value.filter(|v| !v.is_empty()).ok_or_else(|| ApiError::invalid_body(format!("{field} is required")))
    };
    let input = PaymentMethodInput {
        user_id,
        kind: required(body.kind, "type")?,
        provider: required(body.provider, "provider")?,
        token: required(body.token, "token")?,
        last_four: body.last_four_digits.unwrap_or_default(),
        expiry_month: expiry(body.expiry_month, 1..=12, "expiry_month")?,
        expiry_year: expiry(body.expiry_year, 2000..=2999, "expiry_year")?,
        is_default: body.is_default.unwrap_or(false),
    };
    let method = s.engine.run(w.keyed(cmd::add_payment_method(input))).await?;
    Ok(json_response(StatusCode::CREATED, &PaymentMethodJson::new(&method)))
}

async fn list(State(s): State<AppState>, caller: Caller, Q(q): Q<UserQuery>) -> ApiResult {
    let user_id = whose(&caller, q.user_id.as_deref())?;
    let methods = s.engine.payment_methods(user_id)?;
    let payment_methods: Vec<PaymentMethodJson> = methods.iter().map(PaymentMethodJson::new).collect();
    Ok(ok(&PaymentMethodList { total: payment_methods.len(), payment_methods }))
}

async fn set_default(State(s): State<AppState>, caller: Caller, P(id): P<String>, Q(q): Q<UserQuery>, w: Write) -> ApiResult {
    let user_id = whose(&caller, q.user_id.as_deref())?;
    let id = segment(&id, "id", ID_MAX)?;
    let method = s.engine.run(w.keyed(cmd::set_default_payment_method(user_id, id))).await?;
    Ok(ok(&PaymentMethodJson::new(&method)))
}

async fn delete(State(s): State<AppState>, caller: Caller, P(id): P<String>, Q(q): Q<UserQuery>, w: Write) -> ApiResult {
    let user_id = whose(&caller, q.user_id.as_deref())?;
    let id = segment(&id, "id", ID_MAX)?;
    s.engine.run(w.keyed(cmd::delete_payment_method(user_id, id))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
