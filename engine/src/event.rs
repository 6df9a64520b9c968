//! Journal records: the outcomes of commands. A follower applies them without re-running business rules.
//! Each record carries the full new state of one entity; its `version` is the LSN of the change, so it
//! grows with every change, also across delete and re-create.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Basket, IdempotencyRecord, Notification, Payment, Product, Reservation, Wallet};

/// Why a product record changed (for the change feed's consumers: stock events, cache invalidation).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductCause {
    Created,
    Updated,
    Reserved,
    Sold,
    Released,
    Restocked,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasketCause {
    Created,
    ItemAdded,
    ItemUpdated,
    ItemRemoved,
    Cleared,
    /// Cleared because a payment for it completed.
    Purchased,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasketGone {
    Deleted,
    /// Expired 24 h after creation.
    Abandoned,
}

/// What happened to a payment, so a consumer can tell the one record where it completed, failed or was
/// refunded from the records that only move its bookkeeping along (reservation answers, the idempotency
/// record riding on it, metadata edits). Derived from the state before and after ([`PaymentCause::of`]).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentCause {
    Created,
    /// Every line is reserved; the payment can be processed.
    Reserved,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Refunded,
    /// A failed payment was retried: it is pending again.
    Retried,
    /// Metadata edited; the status did not change.
    Updated,
    /// Internal progress only (shards answering, stock given back, the idempotency record written).
    Bookkeeping,
}

impl PaymentCause {
    /// The cause of the change from `before` (None: the payment is new) to `after`.
    pub fn of(before: Option<&Payment>, after: &Payment) -> PaymentCause {
        use crate::model::{Holding, PaymentStatus as S};
        let Some(before) = before else { return PaymentCause::Created };
        if before.status != after.status {
            return match after.status {
                // A refund taken back by the provider: no second completion.
                S::Completed if before.status == S::Refunded => PaymentCause::Bookkeeping,
                S::Pending => PaymentCause::Retried,
                S::Processing => PaymentCause::Processing,
                S::Completed => PaymentCause::Completed,
                S::Failed => PaymentCause::Failed,
                S::Cancelled => PaymentCause::Cancelled,
                S::Refunded => PaymentCause::Refunded,
            };
        }
        // A second (partial) refund leaves the status `refunded`, yet it is a refund of its own.
        if after.refunded_amount > before.refunded_amount {
            return PaymentCause::Refunded;
        }
        if before.metadata != after.metadata {
            PaymentCause::Updated
        } else if before.holding == Holding::Reserving && after.holding == Holding::Reserved {
            PaymentCause::Reserved
        } else {
            PaymentCause::Bookkeeping
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentCause::Created => "created",
            PaymentCause::Reserved => "reserved",
            PaymentCause::Processing => "processing",
            PaymentCause::Completed => "completed",
            PaymentCause::Failed => "failed",
            PaymentCause::Cancelled => "cancelled",
            PaymentCause::Refunded => "refunded",
            PaymentCause::Retried => "retried",
            PaymentCause::Updated => "updated",
            PaymentCause::Bookkeeping => "bookkeeping",
        }
    }
}

/// One journal record.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ProductPut {
        product: Product,
        cause: ProductCause,
    },
    ProductDeleted {
        id: u64,
        version: u64,
    },
    ReservationPut {
        reservation: Reservation,
    },
    BasketPut {
        basket: Basket,
        cause: BasketCause,
    },
    BasketDeleted {
        user_id: String,
        basket_id: String,
        version: u64,
        why: BasketGone,
    },
    PaymentPut {
        payment: Payment,
        cause: PaymentCause,
    },
    NotificationPut {
        notification: Notification,
    },
    NotificationDeleted {
        id: String,
        user_id: String,
        version: u64,
    },
    IdempotencyPut {
        record: IdempotencyRecord,
    },
    IdempotencyDeleted {
        scope: String,
        key: String,
    },
    /// A user's stored payment methods after a change; a wallet with no methods is deleted.
    WalletPut {
        wallet: Wallet,
    },
}

/// Journal record kind for events (the envelope's `kind` field).
pub const EVENT_KIND: u16 = 1;
/// Schema version of [`Event`]; bump with an explicit migration when the layout changes (rkyv has no
/// schema evolution): see `migrate`.
pub const EVENT_SCHEMA: u16 = crate::migrate::SCHEMA;

impl Event {
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("events always serialize")
    }

    /// Decodes with validation: used for everything read back from disk or the network.
    pub fn decode(bytes: &[u8]) -> Result<Event, String> {
        rkyv::from_bytes::<Event, rkyv::rancor::Error>(bytes).map_err(|e| e.to_string())
    }

    /// Which store view this event's entity lives in.
    pub fn view(&self) -> crate::views::View {
        use crate::views::View;
        match self {
            Event::ProductPut { .. } | Event::ProductDeleted { .. } | Event::ReservationPut { .. } => View::Catalog,
            _ => View::State,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Event::ProductPut { .. } => "product_put",
            Event::ProductDeleted { .. } => "product_deleted",
            Event::ReservationPut { .. } => "reservation_put",
            Event::BasketPut { .. } => "basket_put",
            Event::BasketDeleted { .. } => "basket_deleted",
            Event::PaymentPut { .. } => "payment_put",
            Event::NotificationPut { .. } => "notification_put",
            Event::NotificationDeleted { .. } => "notification_deleted",
            Event::IdempotencyPut { .. } => "idempotency_put",
            Event::IdempotencyDeleted { .. } => "idempotency_deleted",
            Event::WalletPut { .. } => "wallet_put",
        }
    }
}
