//! The seam to payment providers. The engine never calls a provider itself: processing a payment whose
//! provider Kassa charges through (`EngineConfig::charged_providers`) puts it in the `Charging` stage and
//! asks for a [`ChargeCall`]. The call is released only once that stage is durable, to whoever drains the
//! channel given as `EngineConfig::charges` (the `kassa-providers` crate), off the shard threads. The
//! answer comes back as a command (`cmd::charge_outcome`) with a [`ChargeResult`]. A payment still
//! `Charging` after a crash, or after `charge_redrive_after`, asks again with the same idempotency key,
//! so the provider charges it at most once.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::Payment;

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

/// The idempotency key of a payment attempt's charge.
pub fn charge_key(payment_id: &str, attempt: u32) -> String {
    format!("kassa-{payment_id}-{attempt}-charge")
}

/// The sending side of the channel the shards release charge calls into. Never blocks a shard: a call
/// that finds it full is dropped and re-driven later.
pub type ChargeSender = tokio::sync::mpsc::Sender<ChargeCall>;

/// What became of a charge.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChargeResult {
    /// Money taken; `charge_id` is the provider's id of it (the payment's `provider_id`).
    Charged { charge_id: String },
    /// The provider refused (`card_declined`, `expired_card`, …): final for this attempt.
    Declined { code: String, reason: String },
    /// The provider failed or could not be reached, and whatever it may have started was voided, so
    /// nothing was taken: the payment fails with `code` and a retry may succeed.
    Failed { code: String, reason: String },
    /// Not known yet (the provider neither answered nor confirmed a void): the payment stays
    /// `processing`, its waiting callers are told so, and the call is re-driven.
    Unknown { reason: String },
}
