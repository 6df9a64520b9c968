//! Feed records → the old payment service's Kafka events (seed contract §6.1/§6.2): topic, key, headers
//! and JSON body byte for byte as Sarama and Go's `encoding/json` wrote them, except for two deliberate
//! differences that make a redelivered event identical to the first delivery:
//!
//! - `event_id` is not a random v4 UUID but a v8 UUID laid out from where the event comes from (see
//!   [`event_id`]), so a consumer can recognise a redelivery and an operator can find the journal record;
//! - `timestamp` is the payment's own time of the change (`processed_at` for a completion, `updated_at`
//!   for a failure or refund), not the time of publication.
//!
//! Only the three payment transitions the old producer had publishers for produce events; a record with
//! any other cause (bookkeeping, metadata edits, …) and every other kind of record produce nothing.

use std::collections::BTreeMap;

use kassa_engine::money::Currency;
use kassa_engine::wire::{Money, rfc3339, to_go_json};
use kassa_engine::{Event, FeedRecord, Payment, PaymentCause};
use serde::Serialize;
use uuid::Uuid;

pub const PAYMENT_EVENTS: &str = "payment-events";
pub const STOCK_EVENTS: &str = "stock-events";
pub const BASKET_EVENTS: &str = "basket-events";
/// The three topics the old consumers read.
pub const EVENT_TOPICS: [&str; 3] = [PAYMENT_EVENTS, STOCK_EVENTS, BASKET_EVENTS];

pub const PAYMENT_COMPLETED: &str = "payment.completed";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";
pub const STOCK_UPDATED: &str = "stock.updated";
pub const BASKET_CLEARED: &str = "basket.cleared";

/// The old producer's `reason` on the events that follow a completion.
const COMPLETION_REASON: &str = "Payment completed";

/// Kassa's headers, after the old ones (the old consumer dispatches on `event_type` and ignores the rest):
/// the producing adapter's transactional id, and the shard, LSN and index within the record the event
/// comes from (the entity version of a payment record is its LSN, so no separate version header).
pub const HEADER_PRODUCER: &str = "kassa_producer";
pub const HEADER_SHARD: &str = "kassa_shard";
pub const HEADER_LSN: &str = "kassa_lsn";
pub const HEADER_INDEX: &str = "kassa_index";

/// Where an event comes from: a feed record, or a payment's state in a bootstrap snapshot (opt-in). The
/// two get disjoint event ids, so an event made up from a snapshot never shares an id with a different
/// event published from the record at the same LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Record = 0,
    Snapshot = 1,
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutEvent {
    pub topic: &'static str,
    pub key: String,
    /// The old headers in the old order, then Kassa's.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Largest LSN a v8 event id can carry (62 bits).
const LSN_BITS: u32 = 62;

/// The event id of the `index`-th event made from the record at `lsn` of `shard` (or from the snapshot
/// state of version `lsn`): a version 8 UUID whose custom bits are, in order, the shard (16 bits), the
/// index (32 bits), the origin (12 bits) and the LSN (62 bits), so `ssss iiii-iiii-8ooo-Vlll-llllllllllll`.
/// Chosen over a v5 (name-based, SHA-1) UUID because it can be read back ([`event_origin`]) and two
/// different (shard, lsn, index) can never share an id; the price is that two separate Kassa clusters
/// publishing into one Kafka cluster would repeat each other's ids.
pub fn event_id(origin: Origin, shard: usize, lsn: u64, index: usize) -> Result<Uuid, String> {
    let shard = u16::try_from(shard).map_err(|_| format!("shard {shard} does not fit an event id"))?;
    let index = u32::try_from(index).map_err(|_| format!("event index {index} does not fit an event id"))?;
    if lsn >> LSN_BITS != 0 {
        return Err(format!("lsn {lsn} does not fit an event id"));
    }
    let mut bytes = [0u8; 16];
    bytes[0..2].copy_from_slice(&shard.to_be_bytes());
    bytes[2..6].copy_from_slice(&index.to_be_bytes());
    // The version nibble takes the top of bytes 6..8, the variant the top two bits of byte 8.
    bytes[6..8].copy_from_slice(&(origin as u16).to_be_bytes());
    bytes[8..16].copy_from_slice(&lsn.to_be_bytes());
    Ok(Uuid::new_v8(bytes))
}

/// `(origin, shard, lsn, index)` of an id made by [`event_id`]; `None` for any other UUID.
pub fn event_origin(id: &Uuid) -> Option<(Origin, usize, u64, usize)> {
    if id.get_version_num() != 8 || id.get_variant() != uuid::Variant::RFC4122 {
        return None;
    }
    let b = id.as_bytes();
    let origin = match u16::from_be_bytes([b[6], b[7]]) & 0x0fff {
        0 => Origin::Record,
        1 => Origin::Snapshot,
        _ => return None,
    };
    let shard = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let index = u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&b[8..16]);
    let lsn = u64::from_be_bytes(lsn) & ((1 << LSN_BITS) - 1);
    Some((origin, shard, lsn, index))
}

/// The events the old producer would have published for `record` (none for most records).
pub fn events_of(record: &FeedRecord, producer: &str) -> Result<Vec<OutEvent>, String> {
    let Event::PaymentPut { payment, cause } = &record.event else { return Ok(Vec::new()) };
    let mut out = Builder { producer, origin: Origin::Record, shard: record.shard, lsn: record.lsn, events: Vec::new() };
    match cause {
        PaymentCause::Completed => out.completion(payment)?,
        PaymentCause::Failed => out.failure(payment)?,
        PaymentCause::Refunded => out.refund(payment)?,
        PaymentCause::Created
        | PaymentCause::Reserved
        | PaymentCause::Processing
        | PaymentCause::Cancelled
        | PaymentCause::Retried
        | PaymentCause::Updated
        | PaymentCause::Bookkeeping => {}
    }
    Ok(out.events)
}

/// For a bootstrap that publishes the snapshot (opt-in): the events a payment's current state implies
/// and that state can still tell — a completion (with its stock and basket events), then a refund if it
/// was refunded, or its failure if it failed. Failures of earlier attempts left no trace in the state and
/// are not made up.
pub fn events_of_state(payment: &Payment, shard: usize, producer: &str) -> Result<Vec<OutEvent>, String> {
    use kassa_engine::PaymentStatus as S;
    let mut out = Builder { producer, origin: Origin::Snapshot, shard, lsn: payment.version, events: Vec::new() };
    match payment.status {
        S::Completed => out.completion(payment)?,
        S::Refunded => {
            out.completion(payment)?;
            out.refund(payment)?;
        }
        S::Failed => out.failure(payment)?,
        S::Pending | S::Processing | S::Cancelled => {}
    }
    Ok(out.events)
}

struct Builder<'a> {
    producer: &'a str,
    origin: Origin,
    shard: usize,
    lsn: u64,
    events: Vec<OutEvent>,
}

impl Builder<'_> {
    fn next_id(&self) -> Result<String, String> {
        Ok(event_id(self.origin, self.shard, self.lsn, self.events.len())?.to_string())
    }

    fn push<T: Serialize>(
        &mut self,
        topic: &'static str,
        key: String,
        mut headers: Vec<(&'static str, String)>,
        body: &T,
    ) -> Result<(), String> {
        let body = to_go_json(body).map_err(|e| format!("event body: {e}"))?;
        headers.push((HEADER_PRODUCER, self.producer.to_string()));
        headers.push((HEADER_SHARD, self.shard.to_string()));
        headers.push((HEADER_LSN, self.lsn.to_string()));
        headers.push((HEADER_INDEX, self.events.len().to_string()));
        self.events.push(OutEvent { topic, key, headers, body });
        Ok(())
    }

    /// `payment.completed`, one `stock.updated` per item in item order, `basket.cleared`: the old order.
    fn completion(&mut self, p: &Payment) -> Result<(), String> {
        let currency = currency_of(p);
        let timestamp = rfc3339(p.processed_at.unwrap_or(p.updated_at));
        let items = (!p.items.is_empty()).then(|| {
            p.items
                .iter()
                .map(|i| CompletedItem {
                    product_id: i.product_id,
                    name: &i.name,
                    quantity: i.quantity,
                    price: Money::new(i.price, currency),
                    subtotal: Money::new(i.subtotal(), currency),
                    category: &i.category,
                })
                .collect()
        });
        let body = PaymentCompleted {
            event_id: self.next_id()?,
            event_type: PAYMENT_COMPLETED,
            timestamp: &timestamp,
            payment_id: &p.id,
            user_id: &p.user_id,
            basket_id: &p.basket_id,
            amount: Money::new(p.amount, currency),
            currency: &p.currency,
            items,
            metadata: metadata_of(p),
        };
        self.push(PAYMENT_EVENTS, p.id.clone(), payment_headers(PAYMENT_COMPLETED, p), &body)?;
        for item in &p.items {
            let body = StockUpdated {
                event_id: self.next_id()?,
                event_type: STOCK_UPDATED,
                timestamp: &timestamp,
                product_id: item.product_id,
                quantity: item.quantity,
                operation: "decrease",
                reason: COMPLETION_REASON,
                metadata: StockMetadata { payment_id: &p.id, user_id: &p.user_id },
            };
            let product = item.product_id.to_string();
            let headers = vec![("event_type", STOCK_UPDATED.to_string()), ("product_id", product.clone())];
            self.push(STOCK_EVENTS, product, headers, &body)?;
        }
        let body = BasketCleared {
            event_id: self.next_id()?,
            event_type: BASKET_CLEARED,
            timestamp: &timestamp,
            user_id: &p.user_id,
            basket_id: &p.basket_id,
            reason: COMPLETION_REASON,
            metadata: BasketMetadata { payment_id: &p.id },
        };
        let headers = vec![("event_type", BASKET_CLEARED.to_string()), ("user_id", p.user_id.clone()), ("basket_id", p.basket_id.clone())];
        self.push(BASKET_EVENTS, p.user_id.clone(), headers, &body)
    }

    fn failure(&mut self, p: &Payment) -> Result<(), String> {
        let timestamp = rfc3339(p.updated_at);
        let body = PaymentFailed {
            event_id: self.next_id()?,
            event_type: PAYMENT_FAILED,
            timestamp: &timestamp,
            payment_id: &p.id,
            user_id: &p.user_id,
            basket_id: &p.basket_id,
            amount: Money::new(p.amount, currency_of(p)),
            currency: &p.currency,
            reason: &p.failure_reason,
            error_code: &p.error_code,
            metadata: metadata_of(p),
        };
        self.push(PAYMENT_EVENTS, p.id.clone(), payment_headers(PAYMENT_FAILED, p), &body)
    }

    fn refund(&mut self, p: &Payment) -> Result<(), String> {
        let timestamp = rfc3339(p.updated_at);
        let body = PaymentRefunded {
            event_id: self.next_id()?,
            event_type: PAYMENT_REFUNDED,
            timestamp: &timestamp,
            payment_id: &p.id,
            user_id: &p.user_id,
            // This refund's amount: a payment may be refunded in parts, one event each.
            amount: Money::new(latest_refund_amount(p), currency_of(p)),
            currency: &p.currency,
            reason: &p.refund_reason,
            refund_id: &p.refund_id,
            metadata: metadata_of(p),
        };
        self.push(PAYMENT_EVENTS, p.id.clone(), payment_headers(PAYMENT_REFUNDED, p), &body)
    }
}

fn payment_headers(event_type: &'static str, p: &Payment) -> Vec<(&'static str, String)> {
    vec![("event_type", event_type.to_string()), ("payment_id", p.id.clone()), ("user_id", p.user_id.clone())]
}

/// The payment's currency for formatting amounts; USD (the old default) when the code is unknown.
fn currency_of(p: &Payment) -> Currency {
    Currency::from_code(&p.currency).unwrap_or(Currency::USD)
}

/// Go marshals a map with its keys sorted; an empty map is `{}` (the old producer always made one).
fn metadata_of(p: &Payment) -> BTreeMap<&str, &str> {
    p.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[derive(Serialize)]
struct PaymentCompleted<'a> {
    event_id: String,
    event_type: &'static str,
    timestamp: &'a str,
    payment_id: &'a str,
    user_id: &'a str,
    basket_id: &'a str,
    amount: Money,
    currency: &'a str,
    items: Option<Vec<CompletedItem<'a>>>,
    metadata: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct CompletedItem<'a> {
    product_id: u64,
    name: &'a str,
    quantity: i64,
    price: Money,
    subtotal: Money,
    category: &'a str,
}

#[derive(Serialize)]
struct PaymentFailed<'a> {
    event_id: String,
    event_type: &'static str,
    timestamp: &'a str,
    payment_id: &'a str,
    user_id: &'a str,
    basket_id: &'a str,
    amount: Money,
    currency: &'a str,
    reason: &'a str,
    error_code: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct PaymentRefunded<'a> {
    event_id: String,
    event_type: &'static str,
    timestamp: &'a str,
    payment_id: &'a str,
    user_id: &'a str,
    amount: Money,
    currency: &'a str,
    reason: &'a str,
    refund_id: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct StockUpdated<'a> {
    event_id: String,
    event_type: &'static str,
    timestamp: &'a str,
    product_id: u64,
    quantity: i64,
    operation: &'static str,
    reason: &'static str,
    metadata: StockMetadata<'a>,
}

/// A Go map in the old event: keys in sorted order.
#[derive(Serialize)]
struct StockMetadata<'a> {
    payment_id: &'a str,
    user_id: &'a str,
}

#[derive(Serialize)]
struct BasketCleared<'a> {
    event_id: String,
    event_type: &'static str,
    timestamp: &'a str,
    user_id: &'a str,
    basket_id: &'a str,
    reason: &'static str,
    metadata: BasketMetadata<'a>,
}

#[derive(Serialize)]
struct BasketMetadata<'a> {
    payment_id: &'a str,
}

/// The amount of the payment's latest refund (`refund_id`); a record from before refund records keeps
/// the whole refunded amount.
fn latest_refund_amount(p: &Payment) -> i64 {
    p.refunds.iter().find(|r| r.id == p.refund_id).map_or(p.refunded_amount, |r| r.amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_read_back() {
        let id = event_id(Origin::Record, 3, 0x0123_4567_89ab, 7).unwrap();
        assert_eq!(id.to_string(), "00030000-0007-8000-8000-0123456789ab");
        assert_eq!(event_origin(&id), Some((Origin::Record, 3, 0x0123_4567_89ab, 7)));
        let id = event_id(Origin::Snapshot, 65_535, (1 << 62) - 1, u32::MAX as usize).unwrap();
        assert_eq!(id.to_string(), "ffffffff-ffff-8001-bfff-ffffffffffff");
        assert_eq!(event_origin(&id), Some((Origin::Snapshot, 65_535, (1 << 62) - 1, u32::MAX as usize)));
        assert!(event_id(Origin::Record, 65_536, 1, 0).is_err());
        assert!(event_id(Origin::Record, 0, 1 << 62, 0).is_err());
        assert_eq!(event_origin(&Uuid::new_v4()), None);
    }
}
