//! Schema 4, kept only to read old records: its layouts and their conversion to the current schema
//! (replies gained stored payment methods, and events a user's wallet of them).

use rkyv::{Archive, Deserialize, Serialize};

use crate::command::EngineError;
use crate::event::{BasketCause, BasketGone, PaymentCause, ProductCause};
use crate::model::{self, Basket, Micros, Notification, Payment, Product, Reservation};

// The layout must stay exactly schema 4's, so no boxing.
#[allow(clippy::large_enum_variant)]
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

// The layout must stay exactly schema 4's, so no boxing.
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

impl From<Reply> for crate::command::Reply {
    fn from(r: Reply) -> crate::command::Reply {
        use crate::command::Reply as Now;
        match r {
            Reply::Product(p) => Now::Product(p),
            Reply::Basket(b) => Now::Basket(b),
            Reply::Payment(p) => Now::Payment(p),
            Reply::Notification(n) => Now::Notification(n),
            Reply::Notifications(n) => Now::Notifications(n),
            Reply::Deleted { existed } => Now::Deleted { existed },
            Reply::Count(n) => Now::Count(n),
        }
    }
}

impl From<IdempotencyRecord> for model::IdempotencyRecord {
    fn from(r: IdempotencyRecord) -> model::IdempotencyRecord {
        let outcome = match r.outcome {
            Outcome::Ok(reply) => crate::command::Outcome::Ok(reply.into()),
            Outcome::Err(e) => crate::command::Outcome::Err(e),
        };
        model::IdempotencyRecord { scope: r.scope, key: r.key, fingerprint: r.fingerprint, outcome, expires_at: r.expires_at }
    }
}

impl From<Event> for crate::event::Event {
    fn from(e: Event) -> crate::event::Event {
        use crate::event::Event as Now;
        match e {
            Event::ProductPut { product, cause } => Now::ProductPut { product, cause },
            Event::ProductDeleted { id, version } => Now::ProductDeleted { id, version },
            Event::ReservationPut { reservation } => Now::ReservationPut { reservation },
            Event::BasketPut { basket, cause } => Now::BasketPut { basket, cause },
            Event::BasketDeleted { user_id, basket_id, version, why } => Now::BasketDeleted { user_id, basket_id, version, why },
            Event::PaymentPut { payment, cause } => Now::PaymentPut { payment, cause },
            Event::NotificationPut { notification } => Now::NotificationPut { notification },
            Event::NotificationDeleted { id, user_id, version } => Now::NotificationDeleted { id, user_id, version },
            Event::IdempotencyPut { record } => Now::IdempotencyPut { record: record.into() },
            Event::IdempotencyDeleted { scope, key } => Now::IdempotencyDeleted { scope, key },
        }
    }
}
