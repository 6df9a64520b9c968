//! Records of older schema versions and their conversion to the current ones (rkyv has no schema
//! evolution, so each bump keeps the old layout here and converts explicitly).
//!
//! Schema 1 → 2: payments gained `error_code` and `refund_id`, and `Event::PaymentPut` a cause. Journal
//! records say their schema in the frame header and are converted when read; store records carry no
//! version, so a store's schema lives under a key of its `meta` keyspace and a store written by schema 1
//! is rewritten once, atomically, at open ([`upgrade_state_store`]).

use rkyv::{Archive, Deserialize, Serialize};

use crate::command::{EngineError, Outcome, Reply};
use crate::event::{Event, PaymentCause};
use crate::model;
use crate::store::{Keyspace, Store, StoreError, WriteBatch};
use crate::views::{self, DecodeError};

/// The current schema of journal events and store records.
pub const SCHEMA: u16 = 2;
/// `meta` key of a store's record schema (2 bytes, big-endian); absent in stores written by schema 1.
const SCHEMA_KEY: &[u8] = b"record_schema";

/// The layouts of schema 1, kept only to read old records.
pub(crate) mod v1 {
    use super::*;
    use crate::model::{Basket, Holding, IdemRef, Micros, Notification, PaymentItem, PaymentStatus, Product, Reservation};

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
}

impl From<v1::Payment> for model::Payment {
    fn from(p: v1::Payment) -> model::Payment {
        // A failure recorded before codes existed keeps its reason; its code says only that it failed.
        let error_code = if p.failure_reason.is_empty() { String::new() } else { "payment_failed".to_string() };
        // A refund recorded before refund ids existed gets one derived from the payment, stable across reads.
        let refund_id = if p.status == model::PaymentStatus::Refunded { format!("re_{}", p.id) } else { String::new() };
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

impl From<v1::Reply> for Reply {
    fn from(r: v1::Reply) -> Reply {
        match r {
            v1::Reply::Product(p) => Reply::Product(p),
            v1::Reply::Basket(b) => Reply::Basket(b),
            v1::Reply::Payment(p) => Reply::Payment(p.into()),
            v1::Reply::Notification(n) => Reply::Notification(n),
            v1::Reply::Notifications(n) => Reply::Notifications(n),
            v1::Reply::Deleted { existed } => Reply::Deleted { existed },
            v1::Reply::Count(n) => Reply::Count(n),
        }
    }
}

impl From<v1::IdempotencyRecord> for model::IdempotencyRecord {
    fn from(r: v1::IdempotencyRecord) -> model::IdempotencyRecord {
        let outcome = match r.outcome {
            v1::Outcome::Ok(reply) => Outcome::Ok(reply.into()),
            v1::Outcome::Err(e) => Outcome::Err(e),
        };
        model::IdempotencyRecord { scope: r.scope, key: r.key, fingerprint: r.fingerprint, outcome, expires_at: r.expires_at }
    }
}

impl From<v1::Event> for Event {
    fn from(e: v1::Event) -> Event {
        match e {
            v1::Event::ProductPut { product, cause } => Event::ProductPut { product, cause },
            v1::Event::ProductDeleted { id, version } => Event::ProductDeleted { id, version },
            v1::Event::ReservationPut { reservation } => Event::ReservationPut { reservation },
            v1::Event::BasketPut { basket, cause } => Event::BasketPut { basket, cause },
            v1::Event::BasketDeleted { user_id, basket_id, version, why } => Event::BasketDeleted { user_id, basket_id, version, why },
            // Schema 1 did not say why; consumers of old records see the state and treat it as bookkeeping.
            v1::Event::PaymentPut { payment } => Event::PaymentPut { payment: payment.into(), cause: PaymentCause::Bookkeeping },
            v1::Event::NotificationPut { notification } => Event::NotificationPut { notification },
            v1::Event::NotificationDeleted { id, user_id, version } => Event::NotificationDeleted { id, user_id, version },
            v1::Event::IdempotencyPut { record } => Event::IdempotencyPut { record: record.into() },
            v1::Event::IdempotencyDeleted { scope, key } => Event::IdempotencyDeleted { scope, key },
        }
    }
}

/// Decodes a journal event written with `schema`.
pub fn decode_event(schema: u16, bytes: &[u8]) -> Result<Event, String> {
    match schema {
        SCHEMA => Event::decode(bytes),
        1 => rkyv::from_bytes::<v1::Event, rkyv::rancor::Error>(bytes).map(Event::from).map_err(|e| e.to_string()),
        other => Err(format!("event schema {other} is not known to this build (it reads 1..={SCHEMA})")),
    }
}

/// The record schema of a store (1 for a used store that predates the marker).
fn store_schema(store: &dyn Store) -> Result<u16, StoreError> {
    match store.get(Keyspace::Meta, SCHEMA_KEY)? {
        Some(bytes) if bytes.len() == 2 => Ok(u16::from_be_bytes([bytes[0], bytes[1]])),
        Some(_) => Err(StoreError::Corrupt("record_schema is not 2 bytes".into())),
        None if store.applied_lsn()? == 0 => Ok(SCHEMA),
        None => Ok(1),
    }
}

/// Brings the state store (payments, idempotency records) to [`SCHEMA`]: every old record is converted and
/// written back with the marker in one atomic, persisted batch, so a crash leaves either store whole.
/// Returns how many records were converted.
pub fn upgrade_state_store(store: &dyn Store) -> Result<usize, StoreError> {
    let schema = store_schema(store)?;
    if schema == SCHEMA {
        if store.get(Keyspace::Meta, SCHEMA_KEY)?.is_none() {
            let mut batch = WriteBatch::new();
            batch.put(Keyspace::Meta, SCHEMA_KEY, &SCHEMA.to_be_bytes());
            store.rewrite(&batch)?;
        }
        return Ok(0);
    }
    if schema != 1 {
        return Err(StoreError::Corrupt(format!("store record schema {schema} is not known to this build (it reads 1..={SCHEMA})")));
    }
    let mut batch = WriteBatch::new();
    let mut failure: Option<DecodeError> = None;
    let mut convert = |ks: Keyspace, f: &dyn Fn(&[u8]) -> Result<rkyv::util::AlignedVec, DecodeError>| -> Result<(), StoreError> {
        store.for_each(ks, &mut |key, value| match f(value) {
            Ok(bytes) => {
                batch.put(ks, key, &bytes);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        })
    };
    convert(Keyspace::Payments, &|v| Ok(views::encode(&model::Payment::from(decode_v1::<v1::Payment>(v, "payment")?))))?;
    convert(Keyspace::Idempotency, &|v| {
        Ok(views::encode(&model::IdempotencyRecord::from(decode_v1::<v1::IdempotencyRecord>(v, "idempotency")?)))
    })?;
    if let Some(e) = failure {
        return Err(StoreError::Corrupt(e.to_string()));
    }
    let converted = batch.len();
    batch.put(Keyspace::Meta, SCHEMA_KEY, &SCHEMA.to_be_bytes());
    store.rewrite(&batch)?;
    Ok(converted)
}

fn decode_v1<T>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| DecodeError { what, reason: e.to_string() })
}

#[cfg(test)]
mod tests;
