//! Records of older schema versions and their conversion to the current ones (rkyv has no schema
//! evolution, so each bump keeps the old layout here and converts explicitly).
//!
//! Each old schema keeps its layouts in a module of its own with the conversion to the next one: [`v1`]
//! (→ 2: payments gained `error_code` and `refund_id`, `Event::PaymentPut` a cause), [`v2`] (→ 3:
//! payments gained the provider `token`, `payment_method_id` and refund records), [`v3`] (→ 4:
//! notifications gained their deliveries) and [`v4`] (→ 5: stored payment methods, in replies and as
//! users' wallets). Schemas 3 and 4 convert straight to the current layouts, which only added to theirs. Journal records say their schema in the
//! frame header and are converted when read; store records carry no version, so a store's schema lives
//! under a key of its `meta` keyspace and an older store is rewritten once, atomically, at open
//! ([`upgrade_state_store`]).

use rkyv::Archive;

use crate::event::Event;
use crate::model;
use crate::store::{Keyspace, Store, StoreError, WriteBatch};
use crate::views::{self, DecodeError};

/// The current schema of journal events and store records.
pub const SCHEMA: u16 = 5;
/// `meta` key of a store's record schema (2 bytes, big-endian); absent in stores written by schema 1.
const SCHEMA_KEY: &[u8] = b"record_schema";

/// Decodes a journal event written with `schema`.
pub fn decode_event(schema: u16, bytes: &[u8]) -> Result<Event, String> {
    match schema {
        SCHEMA => Event::decode(bytes),
        4 => rkyv::from_bytes::<v4::Event, rkyv::rancor::Error>(bytes).map(Event::from).map_err(|e| e.to_string()),
        3 => rkyv::from_bytes::<v3::Event, rkyv::rancor::Error>(bytes).map(Event::from).map_err(|e| e.to_string()),
        2 => rkyv::from_bytes::<v2::Event, rkyv::rancor::Error>(bytes).map(|e| Event::from(v3::Event::from(e))).map_err(|e| e.to_string()),
        1 => rkyv::from_bytes::<v1::Event, rkyv::rancor::Error>(bytes)
            .map(|e| Event::from(v3::Event::from(v2::Event::from(e))))
            .map_err(|e| e.to_string()),
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

/// Brings the state store (payments, notifications, idempotency records) to [`SCHEMA`]: every old record is converted and
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
    if !(1..SCHEMA).contains(&schema) {
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
    let payment = |v: &[u8]| -> Result<model::Payment, DecodeError> {
        Ok(match schema {
            1 => v2::Payment::from(decode_old::<v1::Payment>(v, "payment")?).into(),
            2 => decode_old::<v2::Payment>(v, "payment")?.into(),
            _ => decode_old::<model::Payment>(v, "payment")?,
        })
    };
    let idempotency = |v: &[u8]| -> Result<model::IdempotencyRecord, DecodeError> {
        Ok(match schema {
            1 => v3::IdempotencyRecord::from(v2::IdempotencyRecord::from(decode_old::<v1::IdempotencyRecord>(v, "idempotency")?)).into(),
            2 => v3::IdempotencyRecord::from(decode_old::<v2::IdempotencyRecord>(v, "idempotency")?).into(),
            3 => decode_old::<v3::IdempotencyRecord>(v, "idempotency")?.into(),
            _ => decode_old::<v4::IdempotencyRecord>(v, "idempotency")?.into(),
        })
    };
    // Schemas 1 to 3 share one notification layout; 4 has the current one.
    let notification = |v: &[u8]| -> Result<model::Notification, DecodeError> {
        Ok(match schema {
            1..=3 => decode_old::<v3::Notification>(v, "notification")?.into(),
            _ => decode_old::<model::Notification>(v, "notification")?,
        })
    };
    convert(Keyspace::Payments, &|v| Ok(views::encode(&payment(v)?)))?;
    convert(Keyspace::Idempotency, &|v| Ok(views::encode(&idempotency(v)?)))?;
    convert(Keyspace::Notifications, &|v| Ok(views::encode(&notification(v)?)))?;
    if let Some(e) = failure {
        return Err(StoreError::Corrupt(e.to_string()));
    }
    let converted = batch.len();
    batch.put(Keyspace::Meta, SCHEMA_KEY, &SCHEMA.to_be_bytes());
    store.rewrite(&batch)?;
    Ok(converted)
}

fn decode_old<T>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| DecodeError { what, reason: e.to_string() })
}

pub(crate) mod v1;
pub(crate) mod v2;
pub(crate) mod v3;
pub(crate) mod v4;

#[cfg(test)]
mod tests;
