//! The seam to payment providers. The engine never calls a provider itself: processing a payment whose
//! provider Kassa charges through (`EngineConfig::charged_providers`) puts it in the `Charging` stage and
//! asks for a [`ChargeCall`]; refunding such a payment records a pending refund and asks for a
//! [`RefundCall`]. A call is released only once the record that asks for it is durable, to whoever
//! drains the channel given as `EngineConfig::provider_calls` (the `kassa-providers` crate), off the
//! shard threads. The answer comes back as a command (`cmd::charge_outcome`, `cmd::refund_outcome`) with
//! a [`CallOutcome`]. A call still unanswered after a crash, or after `charge_redrive_after`, is asked
//! again with the same idempotency key, so the provider acts on it at most once.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Payment, Refund};

/// What the engine asks of a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderCall {
    Charge(ChargeCall),
    Refund(RefundCall),
}

/// One request to charge a payment through its provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeCall {
    pub payment_id: String,
    /// The payment's attempt: a retried payment is a new charge with a key of its own.
    pub attempt: u32,
    pub provider: String,
    pub user_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub token: String,
    /// The same for every call about this attempt's charge, across re-drives and restarts.
    pub idempotency_key: String,
}

impl ChargeCall {
    pub(crate) fn of(p: &Payment) -> ChargeCall {
        ChargeCall {
            payment_id: p.id.clone(),
            attempt: p.attempt,
            provider: p.provider.clone(),
            user_id: p.user_id.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            token: p.token.clone(),
            idempotency_key: charge_key(&p.id, p.attempt),
        }
    }
}

/// One request to give back (part of) a payment's charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundCall {
    pub payment_id: String,
    pub refund_id: String,
    pub provider: String,
    /// The provider's id of the charge (the payment's `provider_id`).
    pub charge_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    pub idempotency_key: String,
}

impl RefundCall {
    pub(crate) fn of(p: &Payment, r: &Refund) -> RefundCall {
        RefundCall {
            payment_id: p.id.clone(),
            refund_id: r.id.clone(),
            provider: p.provider.clone(),
            charge_id: p.provider_id.clone(),
            amount: r.amount,
            currency: p.currency.clone(),
            reason: r.reason.clone(),
            idempotency_key: format!("kassa-{}-refund-{}", p.id, r.id),
        }
    }
}

/// The idempotency key of a payment attempt's charge.
pub fn charge_key(payment_id: &str, attempt: u32) -> String {
    format!("kassa-{payment_id}-{attempt}-charge")
}

/// The sending side of the channel the shards release provider calls into. Never blocks a shard: a call
/// that finds it full is dropped and re-driven later.
pub type ProviderCallSender = tokio::sync::mpsc::Sender<ProviderCall>;

/// What became of a provider call.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Done: money taken (a charge) or given back (a refund); `provider_id` is the provider's id of it.
    Succeeded { provider_id: String },
    /// The provider refused (`card_declined`, `expired_card`, …): final for this charge or refund.
    Declined { code: String, reason: String },
    /// The provider failed or could not be reached, and whatever a charge may have started was voided,
    /// so nothing was taken: the payment fails with `code` and a retry may succeed.
    Failed { code: String, reason: String },
    /// Not known yet (the provider neither answered nor confirmed a void): the payment or refund stays
    /// pending, its waiting callers are told so, and the call is re-driven.
    Unknown { reason: String },
}

/// What a provider's webhook said, once its signature is verified: the outcome of a charge or a refund
/// that was still pending, under the provider's own event id (a repeated event changes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderNotice {
    pub event_id: String,
    pub about: NoticeAbout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeAbout {
    Charge {
        payment_id: String,
        attempt: u32,
        outcome: CallOutcome,
    },
    Refund {
        payment_id: String,
        refund_id: String,
        outcome: CallOutcome,
    },
    /// An event Kassa does not act on (acknowledged, so that the provider stops sending it).
    Nothing,
}

/// Why a webhook was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    #[error("no webhooks are taken for this provider")]
    UnknownProvider,
    /// Missing, wrong or stale signature: nothing in it is believed.
    #[error("webhook signature not verified: {0}")]
    Unverified(String),
    #[error("webhook not understood: {0}")]
    Malformed(String),
}
