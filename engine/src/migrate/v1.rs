//! Schema 1, kept only to read old records: its layouts and their conversion to schema 2 (payments
//! gained `error_code` and `refund_id`, and `Event::PaymentPut` a cause).

use rkyv::{Archive, Deserialize, Serialize};

use super::v2;
use super::v3::Notification;
use crate::command::EngineError;
use crate::event::PaymentCause;
use crate::model::{Basket, Holding, IdemRef, Micros, PaymentItem, PaymentStatus, Product, Reservation};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub user_id: String,
    pub basket_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub method: String,
    pub provider: String,
    pub provider_id: String,
    pub description: String,
    pub metadata: Vec<(String, String)>,
    pub items: Vec<PaymentItem>,
    pub holding: Holding,
    pub waiting_on: Vec<u32>,
    pub failure_reason: String,
    pub refunded_amount: i64,
    pub refund_reason: String,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub processed_at: Option<Micros>,
    pub expires_at: Option<Micros>,
    pub attempt: u32,
    pub process_after_reserve: bool,
    pub pending_idempotency: Option<IdemRef>,
    pub version: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Product(Product),
    Basket(Basket),
    Payment(Payment),
    Notification(Notification),
    Notifications(Vec<Notification>),
    Deleted { existed: bool },
    Count(u64),
}

// The layout must stay exactly schema 1's, so no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Reply),
    Err(EngineError),
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    pub fingerprint: u64,
    pub outcome: Outcome,
    pub expires_at: Micros,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ProductPut { product: Product, cause: crate::event::ProductCause },
    ProductDeleted { id: u64, version: u64 },
    ReservationPut { reservation: Reservation },
    BasketPut { basket: Basket, cause: crate::event::BasketCause },
    BasketDeleted { user_id: String, basket_id: String, version: u64, why: crate::event::BasketGone },
    PaymentPut { payment: Payment },
    NotificationPut { notification: Notification },
    NotificationDeleted { id: String, user_id: String, version: u64 },
    IdempotencyPut { record: IdempotencyRecord },
    IdempotencyDeleted { scope: String, key: String },
}

impl From<Payment> for v2::Payment {
    fn from(p: Payment) -> v2::Payment {
        // A failure recorded before codes existed keeps its reason; its code says only that it failed.
        let error_code = if p.failure_reason.is_empty() { String::new() } else { "payment_failed".to_string() };
        // A refund recorded before refund ids existed gets one derived from the payment, stable across reads.
        let refund_id = if p.status == PaymentStatus::Refunded { format!("re_{}", p.id) } else { String::new() };
        v2::Payment {
            id: p.id,
            user_id: p.user_id,
            basket_id: p.basket_id,
            amount: p.amount,
            currency: p.currency,
            status: p.status,
            method: p.method,
            provider: p.provider,
            provider_id: p.provider_id,
            description: p.description,
            metadata: p.metadata,
            items: p.items,
            holding: p.holding,
            waiting_on: p.waiting_on,
            failure_reason: p.failure_reason,
            error_code,
            refunded_amount: p.refunded_amount,
            refund_reason: p.refund_reason,
            refund_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
            processed_at: p.processed_at,
            expires_at: p.expires_at,
            attempt: p.attempt,
            process_after_reserve: p.process_after_reserve,
            pending_idempotency: p.pending_idempotency,
            version: p.version,
        }
    }
}

impl From<Reply> for v2::Reply {
    fn from(r: Reply) -> v2::Reply {
        match r {
            Reply::Product(p) => v2::Reply::Product(p),
            Reply::Basket(b) => v2::Reply::Basket(b),
            Reply::Payment(p) => v2::Reply::Payment(p.into()),
            Reply::Notification(n) => v2::Reply::Notification(n),
            Reply::Notifications(n) => v2::Reply::Notifications(n),
            Reply::Deleted { existed } => v2::Reply::Deleted { existed },
            Reply::Count(n) => v2::Reply::Count(n),
        }
    }
}

impl From<IdempotencyRecord> for v2::IdempotencyRecord {
    fn from(r: IdempotencyRecord) -> v2::IdempotencyRecord {
        let outcome = match r.outcome {
            Outcome::Ok(reply) => v2::Outcome::Ok(reply.into()),
            Outcome::Err(e) => v2::Outcome::Err(e),
        };
        v2::IdempotencyRecord { scope: r.scope, key: r.key, fingerprint: r.fingerprint, outcome, expires_at: r.expires_at }
    }
}

impl From<Event> for v2::Event {
    fn from(e: Event) -> v2::Event {
        match e {
            Event::ProductPut { product, cause } => v2::Event::ProductPut { product, cause },
            Event::ProductDeleted { id, version } => v2::Event::ProductDeleted { id, version },
            Event::ReservationPut { reservation } => v2::Event::ReservationPut { reservation },
            Event::BasketPut { basket, cause } => v2::Event::BasketPut { basket, cause },
            Event::BasketDeleted { user_id, basket_id, version, why } => v2::Event::BasketDeleted { user_id, basket_id, version, why },
            // Schema 1 did not say why; consumers of old records see the state and treat it as bookkeeping.
            Event::PaymentPut { payment } => v2::Event::PaymentPut { payment: payment.into(), cause: PaymentCause::Bookkeeping },
            Event::NotificationPut { notification } => v2::Event::NotificationPut { notification },
            Event::NotificationDeleted { id, user_id, version } => v2::Event::NotificationDeleted { id, user_id, version },
            Event::IdempotencyPut { record } => v2::Event::IdempotencyPut { record: record.into() },
            Event::IdempotencyDeleted { scope, key } => v2::Event::IdempotencyDeleted { scope, key },
        }
    }
}
