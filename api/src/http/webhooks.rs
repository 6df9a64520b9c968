//! `POST /webhooks/{provider}`: a payment provider telling Kassa how a charge or refund it had left
//! pending ended. The signature is the caller's credential (the route needs no token); what it settles
//! runs as the same command the provider runner sends, under an idempotency key of the provider's event
//! id, so a delivery the provider repeats changes nothing the second time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use kassa_engine::{IdempotencyKey, NoticeAbout, ProviderNotice, WebhookRefusal, cmd, wire};
use serde::Serialize;
use utoipa::ToSchema;

use super::spec::{Kind, Param};
use super::{ApiResult, AppState, P, RouteDef, TEXT_MAX, Write, def, ok, segment};
use crate::access::Access;
use crate::error::ApiError;

/// Checks a delivery for `provider` (its headers and exact body bytes) and says what it settles.
pub type Webhooks = Arc<dyn Fn(&str, &HeaderMap, &[u8]) -> Result<ProviderNotice, WebhookRefusal> + Send + Sync>;

const PROVIDER: Param = Param::path("provider", Kind::Key(TEXT_MAX));

/// The answer to a delivery the provider may stop sending.
#[derive(Serialize, ToSchema)]
pub struct WebhookJson {
    received: bool,
    /// The payment it settled, if it settled one.
    payment_id: Option<String>,
    status: Option<&'static str>,
}

pub fn routes() -> Vec<RouteDef> {
    vec![
        def(
            Method::POST,
            "/webhooks/{provider}",
            Access::Public,
            "webhooks",
            "A payment provider's event (signed by the provider)",
            receive,
        )
        .returns(200, "WebhookJson")
        .params(&[PROVIDER])
        .errors(&[400, 404]),
    ]
}

// `Write` checks an Idempotency-Key like every write's; the provider's event id is the key that counts.
async fn receive(State(s): State<AppState>, P(provider): P<String>, headers: HeaderMap, w: Write) -> ApiResult {
    let body = w.body;
    let provider = segment(&provider, "provider", TEXT_MAX)?.to_string();
    let Some(webhooks) = &s.webhooks else {
        return Err(ApiError::not_found(format!("no webhooks are taken for provider {provider}")));
    };
    let notice = webhooks(&provider, &headers, &body).map_err(|e| match e {
        WebhookRefusal::UnknownProvider => ApiError::not_found(format!("no webhooks are taken for provider {provider}")),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let command = match notice.about {
        NoticeAbout::Charge { payment_id, attempt, outcome } => cmd::charge_outcome(payment_id, attempt, outcome),
        NoticeAbout::Refund { payment_id, refund_id, outcome } => cmd::refund_outcome(payment_id, refund_id, outcome),
        NoticeAbout::Nothing => return Ok(ok(&WebhookJson { received: true, payment_id: None, status: None })),
    };
    let key = IdempotencyKey {
        scope: format!("webhook:{provider}"),
        key: notice.event_id,
        fingerprint: wire::fnv1a(&[b"webhook", provider.as_bytes(), &body]),
    };
    let payment = s.engine.run(command.idempotent(Some(key))).await?;
    Ok(ok(&WebhookJson { received: true, payment_id: Some(payment.id), status: Some(payment.status.as_str()) }))
}
