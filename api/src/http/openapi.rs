//! The OpenAPI document, built from the same route table as the router (so the two cannot drift) and
//! from the response and request types (utoipa `ToSchema`).

use std::sync::OnceLock;

use axum::http::Method;
use axum::response::Response;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required};

use super::{all_routes, baskets, notifications, payments, products};

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

/// Builds the document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for (m, path, r) in all_routes() {
        let mut op = OperationBuilder::new().tag(r.tag).summary(Some(r.summary)).operation_id(Some(format!(
            "{}_{}",
            m.as_str().to_lowercase(),
            path.trim_matches('/').replace(['/', '{', '}', '-', '.'], "_")
        )));
        for segment in path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(segment)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))),
            );
        }
        for q in r.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*q)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .schema(Some(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))),
            );
        }
        if let Some(body) = r.request {
            op = op.request_body(Some(
                RequestBodyBuilder::new().content("application/json", json_content(body)).required(Some(Required::True)).build(),
            ));
        }
        if matches!(m, Method::POST | Method::PUT | Method::DELETE) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("Retries with the same key and body get the first answer; 1-128 visible ASCII characters"))
                    .schema(Some(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))),
            );
        }
        op = op
            .response(
                r.status.to_string(),
                ResponseBuilder::new().description("Success").content("application/json", json_content(r.response)).build(),
            )
            .response(
                "default",
                ResponseBuilder::new().description("Error envelope").content("application/json", json_content("ErrorEnvelope")).build(),
            );
        paths.add_path_operation(&path, vec![method(&m)], op.build());
    }
    let components = ComponentsBuilder::new()
        .schema_from::<super::Health>()
        .schema_from::<ErrorEnvelope>()
        .schema_from::<products::ProductJson>()
        .schema_from::<products::ProductList>()
        .schema_from::<products::ProductBody>()
        .schema_from::<products::StatsJson>()
        .schema_from::<products::CategoryJson>()
        .schema_from::<products::CategoryList>()
        .schema_from::<products::MessageJson>()
        .schema_from::<baskets::ItemJson>()
        .schema_from::<baskets::BasketJson>()
        .schema_from::<baskets::CreateBasketBody>()
        .schema_from::<baskets::AddItemBody>()
        .schema_from::<baskets::UpdateItemBody>()
        .schema_from::<baskets::TotalJson>()
        .schema_from::<baskets::CountJson>()
        .schema_from::<baskets::BasketStatsJson>()
        .schema_from::<baskets::ExpiryJson>()
        .schema_from::<baskets::HistoryJson>()
        .schema_from::<baskets::RecommendationsJson>()
        .schema_from::<payments::PaymentItemJson>()
        .schema_from::<payments::PaymentJson>()
        .schema_from::<payments::CreatePaymentBody>()
        .schema_from::<payments::UpdatePaymentBody>()
        .schema_from::<payments::ProcessPaymentBody>()
        .schema_from::<payments::RefundPaymentBody>()
        .schema_from::<payments::PaymentStatsJson>()
        .schema_from::<payments::AnalyticsJson>()
        .schema_from::<payments::SummaryJson>()
        .schema_from::<payments::MethodsJson>()
        .schema_from::<payments::ProvidersJson>()
        .schema_from::<notifications::NotificationJson>()
        .schema_from::<notifications::SingleEnvelope>()
        .schema_from::<notifications::ListEnvelope>()
        .schema_from::<notifications::StatsEnvelope>()
        .schema_from::<notifications::NotificationStats>()
        .schema_from::<notifications::CreateNotificationBody>()
        .schema_from::<notifications::BulkNotificationBody>()
        .schema_from::<notifications::UpdateNotificationBody>()
        .schema_from::<notifications::ReadAllBody>()
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Kassa")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Products, baskets, payments and notifications, compatible with the old services. Money is an exact decimal number in the shop currency.")),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The error envelope of product, basket and payment routes (notification routes send only `error`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    error: String,
    message: String,
}

pub async fn serve() -> Response {
    static DOC: OnceLock<bytes::Bytes> = OnceLock::new();
    let body = DOC.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default().into());
    let mut r = Response::new(axum::body::Body::from(body.clone()));
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    r
}
