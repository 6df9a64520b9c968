//! Stripe's webhooks: the `Stripe-Signature` header checked (HMAC-SHA256 of `<t>.<body>` with the
//! endpoint's secret, within five minutes of `t`), then the event read for what Kassa was still waiting
//! for: an intent that was `processing` (`payment_intent.succeeded` / `.payment_failed`) or a refund that
//! was `pending` (`refund.updated`). The payment and refund are found through the metadata Kassa put on
//! them.

use hmac::{Hmac, Mac};
use kassa_engine::{CallOutcome, NoticeAbout, ProviderNotice, WebhookRefusal};
use serde::Deserialize;
use sha2::Sha256;

use crate::stripe::StripeError;

/// How far a signature's timestamp may be from now (Stripe's own libraries use the same).
const TOLERANCE_SECS: i64 = 300;

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
    #[serde(default)]
    failure_reason: Option<String>,
}

/// Checks `signature` over `body` with `secret` at `now` (Unix seconds) and reads the event.
pub(crate) fn verify(secret: &str, signature: Option<&str>, body: &[u8], now: i64) -> Result<ProviderNotice, WebhookRefusal> {
    if secret.is_empty() {
        return Err(WebhookRefusal::Unverified("no webhook secret is configured (payments.stripe.webhook_secret)".into()));
    }
    let header = signature.ok_or_else(|| WebhookRefusal::Unverified("no Stripe-Signature header".into()))?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.extend(decode_hex(v)),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| WebhookRefusal::Unverified("no timestamp in Stripe-Signature".into()))?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(WebhookRefusal::Unverified("the signature's timestamp is too far from now".into()));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison against every v1 the header carries (Stripe sends one per live secret).
    if !candidates.iter().any(|c| mac.clone().verify_slice(c).is_ok()) {
        return Err(WebhookRefusal::Unverified("no v1 signature matches".into()));
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| WebhookRefusal::Malformed(e.to_string()))?;
    Ok(ProviderNotice { event_id: event.id, about: about(event.kind.as_str(), event.data.object) })
}

fn about(kind: &str, o: Object) -> NoticeAbout {
    let payment_id = o.metadata.get("kassa_payment_id").cloned();
    match (kind, payment_id) {
        ("payment_intent.succeeded", Some(payment_id)) => match attempt(&o) {
            Some(attempt) => NoticeAbout::Charge { payment_id, attempt, outcome: CallOutcome::Succeeded { provider_id: o.id } },
            None => NoticeAbout::Nothing,
        },
        ("payment_intent.payment_failed", Some(payment_id)) => match attempt(&o) {
            Some(attempt) => {
                let (code, reason) = o
                    .last_payment_error
                    .map_or_else(|| ("card_declined".to_string(), "The payment was declined.".to_string()), StripeError::code_and_message);
                let outcome = CallOutcome::Declined { code, reason };
                NoticeAbout::Charge { payment_id, attempt, outcome }
            }
            None => NoticeAbout::Nothing,
        },
        ("refund.updated" | "refund.created", Some(payment_id)) => {
            let Some(refund_id) = o.metadata.get("kassa_refund_id").cloned() else { return NoticeAbout::Nothing };
            let outcome = match o.status.as_str() {
                "succeeded" => CallOutcome::Succeeded { provider_id: o.id },
                "failed" | "canceled" => {
                    let reason = o.failure_reason.unwrap_or_else(|| "the refund failed".into());
                    CallOutcome::Declined { code: "refund_failed".into(), reason }
                }
                _ => return NoticeAbout::Nothing,
            };
            NoticeAbout::Refund { payment_id, refund_id, outcome }
        }
        _ => NoticeAbout::Nothing,
    }
}

fn attempt(o: &Object) -> Option<u32> {
    o.metadata.get("kassa_attempt").and_then(|a| a.parse().ok())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={hex}")
    }

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","status":"succeeded","metadata":{"kassa_payment_id":"p1","kassa_attempt":"2"}}}}"#;

    #[test]
    fn a_signed_event_names_the_charge_it_settles() {
        let notice = verify("whsec_x", Some(&sign("whsec_x", 1000, BODY)), BODY, 1100).unwrap();
        assert_eq!(notice.event_id, "evt_1");
        let outcome = CallOutcome::Succeeded { provider_id: "pi_1".into() };
        assert_eq!(notice.about, NoticeAbout::Charge { payment_id: "p1".into(), attempt: 2, outcome });
    }

    #[test]
    fn wrong_stale_or_missing_signatures_are_refused() {
        let good = sign("whsec_x", 1000, BODY);
        assert!(matches!(verify("whsec_y", Some(&good), BODY, 1000), Err(WebhookRefusal::Unverified(_))), "another secret");
        assert!(matches!(verify("whsec_x", Some(&good), BODY, 1000 + 301), Err(WebhookRefusal::Unverified(_))), "stale");
        assert!(matches!(verify("whsec_x", None, BODY, 1000), Err(WebhookRefusal::Unverified(_))), "unsigned");
        let tampered = BODY.to_vec().into_iter().map(|b| if b == b'2' { b'3' } else { b }).collect::<Vec<_>>();
        assert!(matches!(verify("whsec_x", Some(&good), &tampered, 1000), Err(WebhookRefusal::Unverified(_))), "changed body");
        assert!(matches!(verify("", Some(&good), BODY, 1000), Err(WebhookRefusal::Unverified(_))), "no secret configured");
    }
}
