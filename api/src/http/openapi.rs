//! The OpenAPI document, built from the same route table as the router and the access policy (so the
//! three cannot drift): per route its typed parameters (`spec`), its request and response schemas, who
//! may call it (bearer JWT, `admin` role), and every error status it can answer, each with its body.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use kassa_engine::Currency;
use kassa_engine::limits;
use serde_json::Value;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required};
use utoipa::{PartialSchema, ToSchema};

use super::spec::{self, Field, In, Kind};
use super::{ApiConfig, AppState, RouteDef, all_routes, baskets, notifications, payment_methods, payments, products};
use crate::access::Access;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";
/// The role a security requirement names for administrator-only routes.
pub const ADMIN_ROLE: &str = "admin";

fn method(m: &Method) -> HttpMethod {
    match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Trace,
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    match name.strip_suffix("List") {
        Some(item) if name.ends_with("JsonList") => ArrayBuilder::new().items(Ref::from_schema_name(item)).build().into(),
        _ if name == "Object" => ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object)).build().into(),
        _ => Ref::from_schema_name(name).into(),
    }
}

fn json_content(name: &str) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema_ref(name))).build()
}

/// Everything the document depends on besides the route table.
struct Ctx<'a> {
    cfg: &'a ApiConfig,
    currency: Currency,
}

impl Ctx<'_> {
    fn scale(&self) -> f64 {
        self.currency.scale() as f64
    }

    fn amount_pattern(&self) -> String {
        match self.currency.exponent() {
            0 => r"^-?[0-9]+(\.0+)?$".to_string(),
            e => format!(r"^-?[0-9]+(\.[0-9]{{1,{e}}}0*)?$"),
        }
    }

    fn amount_example(&self) -> String {
        kassa_engine::money::format_minor(1999, self.currency)
    }
}

const TIME_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$";

fn typed(t: Type, nullable: bool) -> SchemaType {
    if nullable { SchemaType::from_iter([t, Type::Null]) } else { SchemaType::Type(t) }
}

fn joined(values: &[&str]) -> String {
    values.iter().map(|v| if v.is_empty() { "\"\"".to_string() } else { format!("`{v}`") }).collect::<Vec<_>>().join(", ")
}

/// The schema of one value of `kind`; `nullable` for optional body fields (JSON `null` = absent).
/// `required` text must not be blank.
fn kind_schema(kind: Kind, ctx: &Ctx, nullable: bool, required: bool) -> (Schema, String) {
    let int = |min: Option<i64>, max: Option<i64>| {
        ObjectBuilder::new()
            .schema_type(typed(Type::Integer, nullable))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(min)
            .maximum(max)
    };
    let string = || ObjectBuilder::new().schema_type(typed(Type::String, nullable));
    let (builder, description) = match kind {
        Kind::Int { min, max } => {
            (int((min != i64::MIN).then_some(min), (max != i64::MAX).then_some(max)), "A whole number (64-bit).".to_string())
        }
        Kind::Key(max) => (string().min_length(Some(1)).max_length(Some(max)), format!("1 to {max} bytes, no control characters.")),
        Kind::Text(max) => {
            let b = string().max_length(Some(max));
            if required {
                (b.min_length(Some(1)), format!("Not blank; at most {max} bytes; no control characters but tab and newline."))
            } else {
                (b, format!("At most {max} bytes; no control characters but tab and newline."))
            }
        }
        Kind::OneOf(values) => {
            let values = values();
            let text = format!("One of {}.", joined(&values));
            let mut enumerated: Vec<Value> = values.into_iter().map(Value::from).collect();
            if nullable {
                enumerated.push(Value::Null);
            }
            (string().enum_values(Some(enumerated)), text)
        }
        Kind::Filter(known) => (string(), format!("Any text; the known values are {}, others match nothing.", joined(&known()))),
        Kind::AmountText => (
            string().pattern(Some(ctx.amount_pattern())).examples([ctx.amount_example()]),
            format!(
                "A decimal amount in {} with at most {} fraction digits, at most {} in magnitude.",
                ctx.currency.code(),
                ctx.currency.exponent(),
                kassa_engine::money::AMOUNT_MAJOR_MAX
            ),
        ),
        Kind::Amount { min_minor, max_minor } => {
            let max = (max_minor != i64::MAX).then(|| max_minor as f64 / ctx.scale());
            (
                ObjectBuilder::new()
                    .schema_type(typed(Type::Number, nullable))
                    .minimum(Some(min_minor as f64 / ctx.scale()))
                    .maximum(max)
                    .examples([Value::from(1999.0 / ctx.scale())]),
                format!("An exact amount in {} with at most {} fraction digits.", ctx.currency.code(), ctx.currency.exponent()),
            )
        }
        Kind::Time => (
            string().pattern(Some(TIME_PATTERN)).examples(["2024-05-01T12:00:00Z"]),
            "An RFC 3339 time (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`) or a date (`2024-05-01`, midnight UTC).".to_string(),
        ),
        Kind::Limit(which) => (
            int(Some(1), Some(spec::limit_max(ctx.cfg) as i64)).default(Some(Value::from(spec::limit_default(ctx.cfg, which)))),
            "Page size.".to_string(),
        ),
        Kind::Offset => (int(Some(0), Some(spec::OFFSET_MAX as i64)).default(Some(Value::from(0))), "Items to skip.".to_string()),
        Kind::Cursor => (
            string().pattern(Some(spec::CURSOR_PATTERN)).max_length(Some(spec::CURSOR_LEN_MAX)).examples(["0:42"]),
            "Keyset paging: a previous page's `next_after`. The page starts just after it (then `offset` more are skipped), \
             so a deep page costs what the first one does."
                .to_string(),
        ),
        Kind::StringMap => (
            ObjectBuilder::new()
                .schema_type(typed(Type::Object, nullable))
                .max_properties(Some(limits::MAP_ENTRIES_MAX))
                .property_names(Some(
                    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(limits::TEXT_SHORT_MAX)),
                ))
                .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(limits::TEXT_LONG_MAX)))),
            format!(
                "String values only; at most {} entries, keys 1 to {} bytes, values at most {} bytes.",
                limits::MAP_ENTRIES_MAX,
                limits::TEXT_SHORT_MAX,
                limits::TEXT_LONG_MAX
            ),
        ),
        Kind::Ignored => (string(), "Any text; not read here.".to_string()),
        Kind::Bool => (ObjectBuilder::new().schema_type(typed(Type::Boolean, nullable)), "true or false.".to_string()),
        Kind::Digits(n) => {
            let example: String = "4242".chars().cycle().take(n).collect();
            (string().pattern(Some(format!("^[0-9]{{{n}}}$"))).examples([example]), format!("Exactly {n} digits."))
        }
        Kind::Keys { max, key_max } => {
            let item = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(key_max));
            let array = ArrayBuilder::new().schema_type(typed(Type::Array, nullable)).items(item).max_items(Some(max));
            return (array.build().into(), format!("At most {max} ids, each 1 to {key_max} bytes without control characters."));
        }
    };
    (builder.build().into(), description)
}

fn with_note(description: String, note: &str) -> String {
    if note.is_empty() { description } else { format!("{description} {note}") }
}

fn describe(schema: Schema, description: String) -> Schema {
    match schema {
        Schema::Object(mut o) => {
            o.description = Some(description);
            Schema::Object(o)
        }
        Schema::Array(mut a) => {
            a.description = Some(description);
            Schema::Array(a)
        }
        other => other,
    }
}

/// A derived (`ToSchema`) object schema with each listed property replaced by its declared type and
/// bounds. `all`: the fields must be exactly the schema's properties (request bodies: every input is
/// declared); else only the listed ones are refined (responses).
fn refine(derived: RefOr<Schema>, fields: &[Field], ctx: &Ctx, all: bool) -> Schema {
    let RefOr::T(Schema::Object(mut object)) = derived else {
        debug_assert!(false, "refine takes an object schema");
        return Schema::Object(Object::new());
    };
    if all {
        let declared: BTreeSet<&str> = fields.iter().map(|f| f.name).collect();
        let derived: BTreeSet<&str> = object.properties.keys().map(String::as_str).collect();
        debug_assert_eq!(declared, derived, "declared body fields and the body type's fields");
        object.required.clear();
    }
    for f in fields {
        let (schema, text) = kind_schema(f.kind, ctx, !f.required, f.required);
        let own = match object.properties.get(f.name) {
            Some(RefOr::T(Schema::Object(o))) => o.description.clone(),
            _ => None,
        };
        let text = [own.unwrap_or_default(), with_note(text, f.note)].join(" ").trim().to_string();
        object.properties.insert(f.name.to_string(), describe(schema, text).into());
        if f.required && !object.required.iter().any(|r| r == f.name) {
            object.required.push(f.name.to_string());
        }
    }
    Schema::Object(object)
}

/// The error statuses of a route: its own (`RouteDef::errors`) plus what every route of its kind can
/// answer.
pub fn error_statuses(r: &RouteDef) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = r.errors.iter().copied().collect();
    // Bad input: a parameter, the body or the Idempotency-Key header of a write.
    if !r.params.is_empty() || r.request.is_some() || r.is_write() {
        out.insert(400);
    }
    if r.access != Access::Public {
        out.extend([401, 403]);
    }
    // A write whose Idempotency-Key was used for a different request.
    if r.idempotent {
        out.insert(409);
    }
    // Body over the limit (the gateway refuses any method by its Content-Length), rate limited, an
    // internal failure, the gateway's deadline; and the engine unavailable (shutting down) for every
    // route that asks it.
    out.extend([413, 429, 500, 504]);
    if r.path != "/openapi.json" {
        out.insert(503);
    }
    out
}

fn error_description(status: u16, r: &RouteDef) -> &'static str {
    match (status, r.access) {
        (400, _) => "Invalid input: a path or query parameter, the body, or the Idempotency-Key header.",
        (401, _) => "No valid bearer token (auth on).",
        (403, Access::Admin) => "The token's role is not `admin`.",
        (403, _) => "The data belongs to another user.",
        (404, _) => "Not found.",
        (409, _) => {
            "Conflict: the state does not allow this step, stock is insufficient, or the Idempotency-Key was used for a different request."
        }
        (410, _) => "Expired.",
        (413, _) => "The request body is larger than the limit.",
        (429, _) => "Rate limited; retry after `Retry-After` seconds.",
        (500, _) => "Internal error.",
        (503, _) if r.response == "Health" => "Unhealthy (the engine is shutting down).",
        (503, _) if r.is_write() => {
            "The engine is unavailable (shutting down), or a shard the command needs is overloaded: then `error` is `overloaded` and the client may retry after `Retry-After` seconds (with its `Idempotency-Key`, where the route keeps one, the retry does nothing twice)."
        }
        (503, _) => "The engine is unavailable (shutting down).",
        (504, _) => "The gateway's deadline for the route passed.",
        _ => "Error.",
    }
}

fn error_response(status: u16, r: &RouteDef) -> utoipa::openapi::Response {
    let body = match status {
        503 if r.response == "Health" => "Health",
        429 => "RateLimited",
        _ => "ErrorEnvelope",
    };
    let mut b = ResponseBuilder::new().description(error_description(status, r)).content("application/json", json_content(body));
    let text = || ObjectBuilder::new().schema_type(Type::String).build();
    let secs = || ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).build();
    match status {
        401 => b = b.header("WWW-Authenticate", HeaderBuilder::new().schema(text()).description(Some("`Bearer`")).build()),
        429 => b = b.header("Retry-After", HeaderBuilder::new().schema(secs()).description(Some("Seconds to wait")).build()),
        // Every write executes an engine command, which a full shard mailbox refuses.
        503 if r.is_write() => {
            let header = HeaderBuilder::new().schema(secs()).description(Some("Seconds to wait; sent when `error` is `overloaded`"));
            b = b.header("Retry-After", header.build());
        }
        _ => {}
    }
    b.build()
}

fn access_text(access: Access) -> &'static str {
    match access {
        Access::Public => "Public: no token needed.",
        Access::User => "Needs a bearer token; a user may only touch their own data, an administrator any.",
        Access::Admin => "Needs a bearer token with the `admin` role.",
    }
}

fn operation(m: &Method, path: &str, r: &RouteDef, ctx: &Ctx) -> utoipa::openapi::path::Operation {
    let id = format!("{}_{}", m.as_str().to_lowercase(), path.trim_matches('/').replace(['/', '{', '}', '-', '.'], "_"));
    let mut op = OperationBuilder::new()
        .tag(r.tag)
        .summary(Some(r.summary))
        .description(Some(access_text(r.access)))
        .operation_id(Some(id))
        .extensions(Some(ExtensionsBuilder::new().add("x-kassa-access", r.access.as_str()).build()));
    for p in r.params {
        let (schema, text) = kind_schema(p.kind, ctx, false, p.required);
        op = op.parameter(
            ParameterBuilder::new()
                .name(p.name)
                .parameter_in(if p.at == In::Path { ParameterIn::Path } else { ParameterIn::Query })
                .required(if p.required { Required::True } else { Required::False })
                .description(Some(with_note(text, p.note)))
                .schema(Some(schema)),
        );
    }
    if let Some(body) = r.request {
        let text = if r.request_optional { "Optional: an empty body means all defaults." } else { "JSON." };
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some(text))
                .content("application/json", json_content(body))
                .required(Some(if r.request_optional { Required::False } else { Required::True }))
                .build(),
        ));
    }
    if r.idempotent {
        op = op.parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("Retries with the same key and body get the first answer; 1-128 visible ASCII characters"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(super::IDEMPOTENCY_KEY_MAX))
                        .pattern(Some("^[!-~]+$")),
                )),
        );
    }
    match r.access {
        Access::Public => {}
        Access::User => op = op.security(SecurityRequirement::new::<_, [&str; 0], &str>(BEARER, [])),
        Access::Admin => op = op.security(SecurityRequirement::new(BEARER, [ADMIN_ROLE])),
    }
    // 204 has no body.
    let success = ResponseBuilder::new().description("Success");
    let success = if r.status == 204 { success } else { success.content("application/json", json_content(r.response)) };
    op = op.response(r.status.to_string(), success.build());
    for status in error_statuses(r) {
        op = op.response(status.to_string(), error_response(status, r));
    }
    op.build()
}

fn body<T: ToSchema>(c: ComponentsBuilder, fields: &[Field], ctx: &Ctx) -> ComponentsBuilder {
    c.schema(T::name(), refine(T::schema(), fields, ctx, true))
}

/// Builds the document for an API with these settings, in this currency.
pub fn document(cfg: &ApiConfig, currency: Currency) -> OpenApi {
    let ctx = Ctx { cfg, currency };
    let mut paths = Paths::new();
    for (m, path, r) in all_routes() {
        paths.add_path_operation(&path, vec![method(&m)], operation(&m, &path, &r, &ctx));
    }
    let payment_enums =
        [Field::required("status", Kind::OneOf(payments::statuses)), Field::required("method", Kind::OneOf(payments::payment_methods))];
    let notification_enums = [
        Field::required("type", Kind::OneOf(|| kassa_engine::notify::TYPES.to_vec())),
        Field::required("status", Kind::OneOf(|| kassa_engine::notify::STATUSES.to_vec())),
        Field::required("priority", Kind::OneOf(|| kassa_engine::notify::PRIORITIES.to_vec())),
        Field::required("channel", Kind::OneOf(|| kassa_engine::notify::CHANNELS.to_vec())),
    ];
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some("A token from `/auth/login` or `kassa token`; the role `admin` opens the administrative routes."))
        .build();
    let mut c = ComponentsBuilder::new()
        .security_scheme(BEARER, SecurityScheme::Http(bearer))
        .schema_from::<super::Health>()
        .schema_from::<ErrorEnvelope>()
        .schema_from::<RateLimited>()
        .schema_from::<products::ProductJson>()
        .schema_from::<products::ProductList>()
        .schema_from::<products::StatsJson>()
        .schema_from::<products::CategoryJson>()
        .schema_from::<products::CategoryList>()
        .schema_from::<products::MessageJson>()
        .schema_from::<baskets::ItemJson>()
        .schema_from::<baskets::BasketJson>()
        .schema_from::<baskets::TotalJson>()
        .schema_from::<baskets::CountJson>()
        .schema_from::<baskets::BasketStatsJson>()
        .schema_from::<baskets::ExpiryJson>()
        .schema_from::<baskets::HistoryJson>()
        .schema_from::<baskets::RecommendationsJson>()
        .schema_from::<payments::PaymentItemJson>()
        .schema_from::<payments::RefundJson>()
        .schema_from::<payment_methods::PaymentMethodJson>()
        .schema_from::<payment_methods::PaymentMethodList>()
        .schema_from::<super::webhooks::WebhookJson>()
        .schema("PaymentJson", refine(payments::PaymentJson::schema(), &payment_enums, &ctx, false))
        .schema_from::<payments::PaymentStatsJson>()
        .schema_from::<payments::AnalyticsJson>()
        .schema_from::<payments::SummaryJson>()
        .schema_from::<payments::MethodsJson>()
        .schema_from::<payments::ProvidersJson>()
        .schema_from::<notifications::DeliveryJson>()
        .schema("NotificationJson", refine(notifications::NotificationJson::schema(), &notification_enums, &ctx, false))
        .schema_from::<notifications::SingleEnvelope>()
        .schema_from::<notifications::ListEnvelope>()
        .schema_from::<notifications::StatsEnvelope>()
        .schema_from::<notifications::NotificationStats>();
    c = body::<products::ProductBody>(c, products::ProductBody::FIELDS, &ctx);
    c = body::<baskets::CreateBasketBody>(c, baskets::CreateBasketBody::FIELDS, &ctx);
    c = body::<baskets::AddItemBody>(c, baskets::AddItemBody::FIELDS, &ctx);
    c = body::<baskets::UpdateItemBody>(c, baskets::UpdateItemBody::FIELDS, &ctx);
    c = body::<payments::CreatePaymentBody>(c, payments::CreatePaymentBody::FIELDS, &ctx);
    c = body::<payments::UpdatePaymentBody>(c, payments::UpdatePaymentBody::FIELDS, &ctx);
    c = body::<payments::ProcessPaymentBody>(c, payments::ProcessPaymentBody::FIELDS, &ctx);
    c = body::<payments::RefundPaymentBody>(c, payments::RefundPaymentBody::FIELDS, &ctx);
    c = body::<payment_methods::AddPaymentMethodBody>(c, payment_methods::AddPaymentMethodBody::FIELDS, &ctx);
    c = body::<notifications::CreateNotificationBody>(c, notifications::CreateNotificationBody::FIELDS, &ctx);
    c = c.schema(
        "ScheduleNotificationBody",
        refine(notifications::CreateNotificationBody::schema(), notifications::CreateNotificationBody::SCHEDULE_FIELDS, &ctx, true),
    );
    c = body::<notifications::BulkNotificationBody>(c, notifications::BulkNotificationBody::FIELDS, &ctx);
    c = body::<notifications::UpdateNotificationBody>(c, notifications::UpdateNotificationBody::FIELDS, &ctx);
    c = body::<notifications::ReadAllBody>(c, notifications::ReadAllBody::FIELDS, &ctx);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Kassa")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Products, baskets, payments and notifications, compatible with the old services. Money is an exact decimal number in the shop currency. With authentication on, each route states who may call it (`security`, `x-kassa-access`).")),
        )
        .paths(paths)
        .components(Some(c.build()))
        .build()
}

/// Every error of every route: `error` is a short label (for notification routes, and the gateway's own
/// refusals, the text itself), `message` the full text.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    error: String,
    message: String,
}

/// The gateway's 429: the error envelope plus the seconds to wait.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RateLimited {
    error: String,
    message: String,
    retry_after: f64,
}

pub async fn serve(State(state): State<AppState>) -> Response {
    let body = state.openapi.get_or_init(|| serde_json::to_vec(&document(&state.cfg, state.currency())).unwrap_or_default().into());
    let mut r = Response::new(axum::body::Body::from(body.clone()));
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_parameter_is_declared_once_and_every_declared_one_is_in_the_path() {
        for (m, path, r) in all_routes() {
            let in_path: Vec<&str> = path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            let declared: Vec<&str> = r.params.iter().filter(|p| p.at == In::Path).map(|p| p.name).collect();
            assert_eq!(in_path, declared, "{m} {path}");
            let mut names: Vec<&str> = r.params.iter().map(|p| p.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), r.params.len(), "{m} {path}: a parameter declared twice");
        }
    }

    #[test]
    fn document_has_typed_parameters_security_and_errors() {
        let cfg = ApiConfig { page_limit_max: 500, ..ApiConfig::default() };
        let doc = serde_json::to_value(document(&cfg, Currency::USD)).unwrap();
        let op = &doc["paths"]["/products/{id}"]["get"];
        let id = &op["parameters"][0];
        assert_eq!(
            (id["name"].as_str(), id["schema"]["type"].as_str(), id["schema"]["minimum"].as_i64()),
            (Some("id"), Some("integer"), Some(1))
        );
        assert!(op.get("security").is_none(), "product reads are public");
        let list = &doc["paths"]["/products"]["get"]["parameters"];
        assert_eq!(list[0]["schema"]["maximum"], 500, "the configured page maximum");
        assert_eq!(list[0]["schema"]["default"], 100);
        assert_eq!(list[1]["schema"]["maximum"], 100_000);
        let refund = &doc["paths"]["/payments/{id}/refund"]["post"];
        assert_eq!(refund["security"], serde_json::json!([{"bearer": ["admin"]}]));
        assert_eq!(refund["x-kassa-access"], "admin");
        let statuses: Vec<&str> = refund["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        for s in ["200", "400", "401", "403", "404", "409", "413", "429", "503"] {
            assert!(statuses.contains(&s), "{s} in {statuses:?}");
        }
        assert!(!statuses.contains(&"default"));
        assert!(refund["responses"]["503"]["description"].as_str().unwrap().contains("`overloaded`"));
        assert_eq!(refund["responses"]["503"]["headers"]["Retry-After"]["schema"]["minimum"], 1, "a write can be refused as overloaded");
        let read = &doc["paths"]["/payments/{id}"]["get"]["responses"]["503"];
        assert!(read.get("headers").is_none(), "a read executes no command: {read}");
        for (m, path, _) in all_routes().into_iter().filter(|(_, _, r)| r.is_write()) {
            let declared = &doc["paths"][&path][m.as_str().to_lowercase()]["responses"]["503"]["headers"]["Retry-After"];
            assert!(declared.is_object(), "{m} {path} executes an engine command: 503 overloaded with Retry-After");
        }
        assert_eq!(doc["paths"]["/baskets/{user_id}"]["get"]["security"], serde_json::json!([{"bearer": []}]));
        let method = &doc["components"]["schemas"]["PaymentJson"]["properties"]["method"]["enum"];
        assert_eq!(method, &serde_json::json!(kassa_engine::PAYMENT_METHODS), "the methods the engine accepts");
        // Optional in a checkout (a stored method brings its own), so null is allowed there too.
        let mut optional = kassa_engine::PAYMENT_METHODS.iter().map(|m| serde_json::json!(m)).collect::<Vec<_>>();
        optional.push(serde_json::Value::Null);
        assert_eq!(doc["components"]["schemas"]["CreatePaymentBody"]["properties"]["method"]["enum"], serde_json::json!(optional));
        let kinds = &doc["components"]["schemas"]["AddPaymentMethodBody"]["properties"]["type"]["enum"];
        assert_eq!(kinds, method, "a stored method's type is a payment method");
        let status = &doc["paths"]["/payments/status/{status}"]["get"]["parameters"][0]["schema"]["enum"];
        assert_eq!(status.as_array().unwrap().len(), kassa_engine::PaymentStatus::ALL.len());
        let body = &doc["components"]["schemas"]["CreateNotificationBody"];
        assert_eq!(body["properties"]["channel"]["enum"].as_array().unwrap().len(), kassa_engine::notify::CHANNELS.len());
        assert_eq!(body["properties"]["title"]["maxLength"], limits::TEXT_SHORT_MAX);
        let mut required: Vec<&str> = body["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort_unstable();
        assert_eq!(required, ["channel", "message", "title", "type", "user_id"]);
        let schedule = &doc["components"]["schemas"]["ScheduleNotificationBody"];
        assert!(schedule["required"].as_array().unwrap().contains(&Value::from("send_at")));
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(
            doc["paths"]["/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Health"
        );
    }
}
