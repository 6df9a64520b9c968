//! Schema 2, kept only to read old records: its layouts and their conversion to schema 3
//! (payments gained the provider `token` they are charged with, the stored `payment_method_id`, and
//! their refunds as records).

use rkyv::{Archive, Deserialize, Serialize};

use super::v3::{self, Notification};
use crate::command::EngineError;
use crate::event::{BasketCause, BasketGone, PaymentCause, ProductCause};
use crate::model::{self, Basket, Holding, IdemRef, Micros, PaymentItem, PaymentStatus, Product, Reservation};

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
    pub error_code: String,
    pub refunded_amount: i64,
    pub refund_reason: String,
    pub refund_id: String,
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

// The layout must stay exactly schema 2's, so no boxing.
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
    ProductPut { product: Product, cause: ProductCause },
    ProductDeleted { id: u64, version: u64 },
    ReservationPut { reservation: Reservation },
    BasketPut { basket: Basket, cause: BasketCause },
    BasketDeleted { user_id: String, basket_id: String, version: u64, why: BasketGone },
    PaymentPut { payment: Payment, cause: PaymentCause },
    NotificationPut { notification: Notification },
    NotificationDeleted { id: String, user_id: String, version: u64 },
    IdempotencyPut { record: IdempotencyRecord },
    IdempotencyDeleted { scope: String, key: String },
}

impl From<Payment> for model::Payment {
    fn from(p: Payment) -> model::Payment {
        // A schema 2 refund was one, whole, and done at once.
        let refunds = (p.refunded_amount > 0)
            .then(|| model::Refund {
                id: p.refund_id.clone(),
                amount: p.refunded_amount,
                reason: p.refund_reason.clone(),
                status: model::RefundStatus::Succeeded,
                provider_refund_id: String::new(),
                failure_reason: String::new(),
                created_at: p.updated_at,
                updated_at: p.updated_at,
            })
            .into_iter()
            .collect();
        model::Payment {
            id: p.id,
            user_id: p.user_id,
            basket_id: p.basket_id,
            amount: p.amount,
            currency: p.currency,
            status: p.status,
            method: p.method,
            provider: p.provider,
            provider_id: p.provider_id,
            // Schema 2 never charged through a provider: nothing to charge with, no stored method.
            token: String::new(),
            payment_method_id: String::new(),
            description: p.description,
            metadata: p.metadata,
            items: p.items,
            holding: p.holding,
            waiting_on: p.waiting_on,
            failure_reason: p.failure_reason,
            error_code: p.error_code,
            refunded_amount: p.refunded_amount,
            refund_reason: p.refund_reason,
            refunds,
            refund_id: p.refund_id,
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

impl From<Reply> for v3::Reply {
    fn from(r: Reply) -> v3::Reply {
        use v3::Reply as Now;
        match r {
            Reply::Product(p) => Now::Product(p),
            Reply::Basket(b) => Now::Basket(b),
            Reply::Payment(p) => Now::Payment(p.into()),
            Reply::Notification(n) => Now::Notification(n),
            Reply::Notifications(n) => Now::Notifications(n),
            Reply::Deleted { existed } => Now::Deleted { existed },
            Reply::Count(n) => Now::Count(n),
        }
    }
}

impl From<IdempotencyRecord> for v3::IdempotencyRecord {
    fn from(r: IdempotencyRecord) -> v3::IdempotencyRecord {
        let outcome = match r.outcome {
            Outcome::Ok(reply) => v3::Outcome::Ok(reply.into()),
            Outcome::Err(e) => v3::Outcome::Err(e),
        };
        v3::IdempotencyRecord { scope: r.scope, key: r.key, fingerprint: r.fingerprint, outcome, expires_at: r.expires_at }
    }
}

impl From<Event> for v3::Event {
    fn from(e: Event) -> v3::Event {
        use v3::Event as Now;
        match e {
            Event::ProductPut { product, cause } => Now::ProductPut { product, cause },
            Event::ProductDeleted { id, version } => Now::ProductDeleted { id, version },
            Event::ReservationPut { reservation } => Now::ReservationPut { reservation },
            Event::BasketPut { basket, cause } => Now::BasketPut { basket, cause },
            Event::BasketDeleted { user_id, basket_id, version, why } => Now::BasketDeleted { user_id, basket_id, version, why },
            Event::PaymentPut { payment, cause } => Now::PaymentPut { payment: payment.into(), cause },
            Event::NotificationPut { notification } => Now::NotificationPut { notification },
            Event::NotificationDeleted { id, user_id, version } => Now::NotificationDeleted { id, user_id, version },
            Event::IdempotencyPut { record } => Now::IdempotencyPut { record: record.into() },
            Event::IdempotencyDeleted { scope, key } => Now::IdempotencyDeleted { scope, key },
        }
    }
}
