//! What `verify` compares for Kafka. An event log holds history, not state, so the comparison is of
//! histories: for each payment (key `payment:<id>`), one line per event published about it, in the order
//! of the records they came from —
//!
//! ```text
//! payment.failed                      (one per failed attempt)
//! payment.completed
//! stock.updated <product_id> <quantity>   (one per item, in item order)
//! basket.cleared <basket_id>
//! payment.refunded <amount>          (one per refund, in order)
//! ```
//!
//! [`expected`] derives that history from the payment's final state (every attempt before the current
//! one ended in a failure, since only a failed payment can be retried; the current attempt's outcome is
//! the status); [`Collected`] rebuilds it from what a read-committed consumer finds in the three topics.
//! A lost, duplicated or reordered event therefore shows up as a difference.

use std::collections::BTreeMap;

use kassa_engine::money::{Currency, format_minor};
use kassa_engine::placement::shard_of_user;
use kassa_engine::{Payment, PaymentStatus};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::events::{
    BASKET_CLEARED, BASKET_EVENTS, HEADER_INDEX, HEADER_LSN, HEADER_PRODUCER, PAYMENT_COMPLETED, PAYMENT_EVENTS, PAYMENT_FAILED,
    PAYMENT_REFUNDED, STOCK_EVENTS, STOCK_UPDATED,
};

/// The key of a payment's history.
pub fn key_of(payment_id: &str) -> String {
    format!("payment:{payment_id}")
}

/// The history the payment's state implies, or `None` when it implies no event — or when its last change
/// is older than `since` (the first LSN this writer followed): a writer that started after the payment's
/// last change, without publishing the snapshot, never published anything about it.
pub fn expected(p: &Payment, since: u64) -> Option<String> {
    if p.version < since {
        return None;
    }
    let mut lines: Vec<String> = (1..p.attempt).map(|_| PAYMENT_FAILED.to_string()).collect();
    let completion = |lines: &mut Vec<String>| {
        lines.push(PAYMENT_COMPLETED.to_string());
        lines.extend(p.items.iter().map(|i| format!("{STOCK_UPDATED} {} {}", i.product_id, i.quantity)));
        lines.push(format!("{BASKET_CLEARED} {}", p.basket_id));
    };
    match p.status {
        PaymentStatus::Completed => completion(&mut lines),
        PaymentStatus::Refunded => {
            completion(&mut lines);
            let currency = Currency::from_code(&p.currency).unwrap_or(Currency::USD);
            let refunds = p.refunds.iter().filter(|r| r.status == kassa_engine::RefundStatus::Succeeded).map(|r| r.amount);
            let amounts: Vec<i64> = if p.refunds.is_empty() { vec![p.refunded_amount] } else { refunds.collect() };
            lines.extend(amounts.into_iter().map(|a| format!("{PAYMENT_REFUNDED} {}", format_minor(a, currency))));
        }
        PaymentStatus::Failed => lines.push(PAYMENT_FAILED.to_string()),
        PaymentStatus::Pending | PaymentStatus::Processing | PaymentStatus::Cancelled => {}
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Histories rebuilt from the messages of one writer (`producer` header), for payments of its shard.
pub struct Collected<'a> {
    producer: &'a str,
    shard: usize,
    shards: usize,
    lines: BTreeMap<String, Vec<(u64, u64, String)>>,
}

#[derive(Deserialize)]
struct PaymentBody<'a> {
    #[serde(borrow)]
    amount: &'a RawValue,
}

#[derive(Deserialize)]
struct StockBody {
    product_id: u64,
    quantity: i64,
    metadata: StockMeta,
}

#[derive(Deserialize)]
struct StockMeta {
    payment_id: String,
    user_id: String,
}

#[derive(Deserialize)]
struct BasketBody {
    user_id: String,
    basket_id: String,
    metadata: BasketMeta,
}

#[derive(Deserialize)]
struct BasketMeta {
    payment_id: String,
}

impl<'a> Collected<'a> {
    pub fn new(producer: &'a str, shard: usize, shards: usize) -> Self {
        Collected { producer, shard, shards, lines: BTreeMap::new() }
    }

    pub fn add(&mut self, message: &BorrowedMessage<'_>) {
        let header = |name: &str| -> Option<String> {
            let headers = message.headers()?;
            headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if header(HEADER_PRODUCER).as_deref() != Some(self.producer) {
            return;
        }
        match self.line_of(message, &header) {
            Ok(Some((payment_id, user_id, lsn, index, line))) => {
                if self.shards > 0 && shard_of_user(&user_id, self.shards as u32) as usize != self.shard {
                    return;
                }
                self.lines.entry(key_of(&payment_id)).or_default().push((lsn, index, line));
            }
            Ok(None) => {}
            // Ours but unreadable: report it under its own key so that verify shows it.
            Err(reason) => {
                let key = format!("kafka:{}/{}/{}", message.topic(), message.partition(), message.offset());
                self.lines.entry(key).or_default().push((0, 0, format!("unreadable: {reason}")));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn line_of(
        &self,
        message: &BorrowedMessage<'_>,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(String, String, u64, u64, String)>, String> {
        let number = |name: &str| -> Result<u64, String> {
            header(name).ok_or_else(|| format!("no {name} header"))?.parse().map_err(|e| format!("{name}: {e}"))
        };
        let (lsn, index) = (number(HEADER_LSN)?, number(HEADER_INDEX)?);
        let body = message.payload().unwrap_or_default();
        let event_type = header("event_type").ok_or("no event_type header")?;
        let found = match message.topic() {
            PAYMENT_EVENTS => {
                let payment_id = header("payment_id").ok_or("no payment_id header")?;
                let user_id = header("user_id").ok_or("no user_id header")?;
                let line = match event_type.as_str() {
                    PAYMENT_COMPLETED | PAYMENT_FAILED => event_type,
                    PAYMENT_REFUNDED => {
                        let body: PaymentBody<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                        format!("{PAYMENT_REFUNDED} {}", body.amount.get())
                    }
                    other => return Err(format!("unknown event type {other}")),
                };
                (payment_id, user_id, line)
            }
            STOCK_EVENTS => {
                let body: StockBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                (body.metadata.payment_id, body.metadata.user_id, format!("{event_type} {} {}", body.product_id, body.quantity))
            }
            BASKET_EVENTS => {
                let body: BasketBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                (body.metadata.payment_id, body.user_id, format!("{event_type} {}", body.basket_id))
            }
            _ => return Ok(None),
        };
        let (payment_id, user_id, line) = found;
        Ok(Some((payment_id, user_id, lsn, index, line)))
    }

    /// `payment:<id>` → history, each in record order (a stable sort keeps duplicates side by side).
    pub fn finish(self) -> BTreeMap<String, String> {
        self.lines
            .into_iter()
            .map(|(key, mut lines)| {
                lines.sort_by_key(|(lsn, index, _)| (*lsn, *index));
                (key, lines.into_iter().map(|(_, _, line)| line).collect::<Vec<_>>().join("\n"))
            })
            .collect()
    }
}
