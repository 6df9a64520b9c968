//! `stripe`: a provider speaking Stripe's HTTP API. A charge is one PaymentIntent created and confirmed
//! in a single call (`POST /v1/payment_intents`, `confirm=true`) under the charge's idempotency key, so a
//! repeat is answered by Stripe with the first response instead of a second charge. A void replays that
//! same request to learn the intent (creating it if the first never arrived) and cancels it.

use std::time::Duration;

use kassa_engine::{ChargeCall, RefundCall};
use serde::Deserialize;

use crate::config::StripeConfig;
use crate::provider::{Charge, PaymentProvider, ProviderError};

pub(crate) const NAME: &str = "stripe";

pub struct StripeProvider {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    webhook_secret: String,
}

/// A PaymentIntent or a Refund: the fields Kassa reads.
#[derive(Deserialize)]
struct StripeObject {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

/// Stripe's error object (also an intent's `last_payment_error`).
#[derive(Deserialize)]
pub(crate) struct StripeError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeError {
    /// The code a payment fails with, and the text for people.
    pub(crate) fn code_and_message(self) -> (String, String) {
        // A specific decline code says why (insufficient_funds, …) where `code` says only card_declined.
        let specific = self.decline_code.filter(|c| c != "generic_decline");
        let code = specific.or(self.code).unwrap_or_else(|| "card_declined".into());
        (code, self.message.unwrap_or_else(|| "The payment was declined.".into()))
    }

    fn declined(self) -> ProviderError {
        let (code, message) = self.code_and_message();
        ProviderError::Declined { code, message }
    }
}

impl StripeProvider {
    pub fn new(cfg: &StripeConfig) -> Result<StripeProvider, String> {
        if cfg.api_key.is_empty() {
            return Err("payments.stripe.api_key (or KASSA_STRIPE_API_KEY) is required when stripe is enabled".into());
        }
        // The runner bounds each call; this only keeps a connection attempt from hanging past it.
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        Ok(StripeProvider {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
            webhook_secret: cfg.webhook_secret.clone(),
        })
    }

    /// The create-and-confirm request of `call`: the same bytes every time, as Stripe's idempotency wants.
    async fn create(&self, call: &ChargeCall) -> Result<StripeObject, ProviderError> {
        let amount = call.amount.to_string();
        let currency = call.currency.to_ascii_lowercase();
        let attempt = call.attempt.to_string();
        let mut form = vec![
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("confirm", "true"),
            ("payment_method_types[]", "card"),
            ("metadata[kassa_payment_id]", call.payment_id.as_str()),
            ("metadata[kassa_user_id]", call.user_id.as_str()),
            ("metadata[kassa_attempt]", attempt.as_str()),
        ];
        // A stored payment method is `pm_…`; a card token from Stripe.js or a test token is `tok_…`.
        if call.token.starts_with("pm_") {
            form.push(("payment_method", call.token.as_str()));
        } else {
            form.push(("payment_method_data[type]", "card"));
            form.push(("payment_method_data[card][token]", call.token.as_str()));
        }
        let response = self.post("/v1/payment_intents", &form, &call.idempotency_key).await?;
        read_object(response).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], key: &str) -> Result<reqwest::Response, ProviderError> {
        self.http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("stripe: {e}")))
    }
}

/// A PaymentIntent or Refund answer, or what its failure means.
async fn read_object(response: reqwest::Response) -> Result<StripeObject, ProviderError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| ProviderError::Unavailable(format!("stripe: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| ProviderError::Unavailable(format!("stripe: unreadable intent: {e}")));
    }
    let error = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error);
    match status.as_u16() {
        // A card error (402) or a request Stripe will never accept (400, 404): final for this attempt.
        400 | 402 | 404 => Err(error.map_or_else(
            |_| ProviderError::Declined { code: "invalid_request".into(), message: format!("stripe answered {status}") },
            StripeError::declined,
        )),
        // Rate limits, conflicts on a key still in progress, server errors, bad credentials: try again.
        _ => Err(ProviderError::Unavailable(format!("stripe answered {status}"))),
    }
}

#[async_trait::async_trait]
impl PaymentProvider for StripeProvider {
    /// Its `Stripe-Signature` checked, then what it settles.
    fn webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<kassa_engine::ProviderNotice, kassa_engine::WebhookRefusal> {
        let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
        crate::stripe_webhook::verify(&self.webhook_secret, signature, body, now_secs)
    }

    fn name(&self) -> &str {
        NAME
    }

    async fn charge(&self, call: &ChargeCall) -> Result<Charge, ProviderError> {
        let intent = self.create(call).await?;
        match intent.status.as_str() {
            "succeeded" => Ok(Charge { id: intent.id }),
            "requires_payment_method" | "canceled" => Err(intent.last_payment_error.map_or_else(
                || ProviderError::Declined { code: "card_declined".into(), message: "The payment was declined.".into() },
                StripeError::declined,
            )),
            // 3-D Secure and the like need the customer, who is not here: decline.
            "requires_action" => Err(ProviderError::Declined {
                code: "authentication_required".into(),
                message: "The card needs the customer to authenticate the payment.".into(),
            }),
            // Stripe finishes it and says so in a webhook; nothing to void.
            "processing" => Err(ProviderError::Pending(format!("stripe: payment intent {} is processing", intent.id))),
            other => Err(ProviderError::Unavailable(format!("stripe: payment intent {} is {other}", intent.id))),
        }
    }

    async fn refund(&self, call: &RefundCall) -> Result<String, ProviderError> {
        let amount = call.amount.to_string();
        // Stripe's own `reason` takes three fixed words; the shop's text goes into the metadata.
        let form = [
            ("payment_intent", call.charge_id.as_str()),
            ("amount", amount.as_str()),
            ("metadata[kassa_payment_id]", call.payment_id.as_str()),
            ("metadata[kassa_refund_id]", call.refund_id.as_str()),
            ("metadata[reason]", call.reason.as_str()),
        ];
        let response = self.post("/v1/refunds", &form, &call.idempotency_key).await?;
        let refund = read_object(response).await?;
        match refund.status.as_str() {
            "succeeded" => Ok(refund.id),
            "failed" | "canceled" => {
                Err(ProviderError::Declined { code: "refund_failed".into(), message: format!("refund {} {}", refund.id, refund.status) })
            }
            // Stripe finishes it and says so in a webhook (or when asked again under the same key).
            other => Err(ProviderError::Pending(format!("stripe: refund {} is {other}", refund.id))),
        }
    }

    async fn void(&self, call: &ChargeCall) -> Result<Option<Charge>, ProviderError> {
        // Kassa keeps no intent id: the replayed create names it (or creates it, if the first never came).
        let intent = match self.create(call).await {
            Ok(intent) => intent,
            Err(ProviderError::Declined { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match intent.status.as_str() {
            "succeeded" => Ok(Some(Charge { id: intent.id })),
            "canceled" | "requires_payment_method" => Ok(None),
            _ => {
                let cancel = format!("{}-cancel", call.idempotency_key);
                let response = self.post(&format!("/v1/payment_intents/{}/cancel", intent.id), &[], &cancel).await?;
                let cancelled = read_object(response).await?;
                if cancelled.status == "canceled" {
                    Ok(None)
                } else {
                    Err(ProviderError::Unavailable(format!("stripe: cancel left {}", cancelled.status)))
                }
            }
        }
    }
}
