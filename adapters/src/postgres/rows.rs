//! Entities as the column values of the old tables, and the canonical text of a row that `render` and
//! `read_back` both produce (so `verify` compares like with like).
//!
//! Money is the exact decimal text of the minor units (`format_minor`: `2499.99`, `150`), cast to
//! `numeric` by PostgreSQL: never a float. It is also what the old writer stored: GORM handed pgx a
//! float64, which pgx turns into a numeric through its shortest decimal text (`150`, not `150.00`).
//! Times travel as PostgreSQL's binary `timestamptz` (micros since 2000-01-01), so nothing is rounded.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::{BufMut, BytesMut};
use kassa_engine::money::{Currency, format_minor};
use kassa_engine::wire::{rfc3339, to_go_json};
use kassa_engine::{Micros, Notification, Product};
use serde::Serialize;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

/// Unix micros of 2000-01-01T00:00:00Z, PostgreSQL's epoch for binary times.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` in PostgreSQL's binary form: micros since 2000-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgTime(i64);

impl PgTime {
    /// Refuses only micros so far before 1970 that the shift to PostgreSQL's epoch overflows.
    pub fn from_unix(micros: Micros) -> Result<PgTime, String> {
        micros.checked_sub(PG_EPOCH_MICROS).map(PgTime).ok_or_else(|| format!("time {micros} µs is out of range"))
    }

    /// Unix micros; PostgreSQL's `±infinity` (the ends of i64) stay at the ends.
    pub fn unix(self) -> Micros {
        self.0.saturating_add(PG_EPOCH_MICROS)
    }
}

impl ToSql for PgTime {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_i64(self.0);
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<PgTime, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| format!("timestamptz of {} bytes", raw.len()))?;
        Ok(PgTime(i64::from_be_bytes(bytes)))
    }

    accepts!(TIMESTAMPTZ);
}

fn pg_time(micros: Micros) -> Result<PgTime, String> {
    PgTime::from_unix(micros)
}

fn pg_time_opt(micros: Option<Micros>) -> Result<Option<PgTime>, String> {
    micros.map(pg_time).transpose()
}

/// An engine version (an LSN) as `bigint`.
pub fn version(v: u64) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("version {v} does not fit a bigint"))
}

/// A product id as the `bigint` of `products.id`.
pub fn product_id(id: u64) -> Result<i64, String> {
    i64::try_from(id).map_err(|_| format!("product id {id} does not fit a bigint"))
}

/// One row of `products`. Columns the schema lets be NULL are options, because `read_back` reads rows
/// the adapter did not write too (the old estate's, an operator's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRow {
    pub id: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The numeric as text.
    pub price: Option<String>,
    pub stock: Option<i64>,
    pub category: Option<String>,
    pub created_at: Option<PgTime>,
    pub updated_at: Option<PgTime>,
}

impl ProductRow {
    /// `stock` is what can still be bought (`available`): the old column's meaning. Prices are in the
    /// shop currency.
    pub fn of(p: &Product, currency: Currency) -> Result<ProductRow, String> {
        Ok(ProductRow {
            id: product_id(p.id)?,
            name: Some(p.name.clone()),
            description: Some(p.description.clone()),
            price: Some(format_minor(p.price, currency)),
            stock: Some(p.available),
            category: Some(p.category.clone()),
            created_at: Some(pg_time(p.created_at)?),
            updated_at: Some(pg_time(p.updated_at)?),
        })
    }

    pub fn key(&self) -> String {
        format!("product:{}", self.id)
    }

    /// A compact JSON object of the columns in table order; the price as its decimal text with trailing
    /// fractional zeros dropped (`150.00` and `150` are the same numeric to every reader).
    pub fn canonical(&self) -> String {
        #[derive(Serialize)]
        struct Text<'a> {
            id: i64,
            name: Option<&'a str>,
            description: Option<&'a str>,
            price: Option<String>,
            stock: Option<i64>,
            category: Option<&'a str>,
            created_at: Option<String>,
            updated_at: Option<String>,
        }
        let text = Text {
            id: self.id,
            name: self.name.as_deref(),
            description: self.description.as_deref(),
            price: self.price.as_deref().map(trim_numeric),
            stock: self.stock,
            category: self.category.as_deref(),
            created_at: self.created_at.map(|t| rfc3339(t.unix())),
            updated_at: self.updated_at.map(|t| rfc3339(t.unix())),
        };
        serde_json::to_string(&text).unwrap_or_default()
    }
}

/// One row of `notifications`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub message: String,
    /// The `type` column.
    pub kind: String,
    pub status: String,
    pub priority: String,
    pub channel: String,
    /// NULL when the notification has none: the old entity's empty string never meant a template.
    pub template_id: Option<String>,
    /// The `json` column's text.
    pub data: Option<String>,
    pub created_at: Option<PgTime>,
    pub updated_at: Option<PgTime>,
    pub sent_at: Option<PgTime>,
    pub read_at: Option<PgTime>,
    pub expires_at: Option<PgTime>,
}

impl NotificationRow {
    pub fn of(n: &Notification) -> Result<NotificationRow, String> {
        Ok(NotificationRow {
            id: n.id.clone(),
            user_id: n.user_id.clone(),
            title: n.title.clone(),
            message: n.message.clone(),
            kind: n.kind.clone(),
            status: n.status.clone(),
            priority: n.priority.clone(),
            channel: n.channel.clone(),
            template_id: (!n.template_id.is_empty()).then(|| n.template_id.clone()),
            data: data_json(&n.data)?,
            created_at: Some(pg_time(n.created_at)?),
            updated_at: Some(pg_time(n.updated_at)?),
            sent_at: pg_time_opt(n.sent_at)?,
            read_at: pg_time_opt(n.read_at)?,
            expires_at: pg_time_opt(n.expires_at)?,
        })
    }

    pub fn key(&self) -> String {
        format!("notification:{}", self.id)
    }

    /// A compact JSON object of the columns in table order, `data` as the JSON value it holds.
    pub fn canonical(&self) -> String {
        #[derive(Serialize)]
        struct Text<'a> {
            id: &'a str,
            user_id: &'a str,
            title: &'a str,
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            status: &'a str,
            priority: &'a str,
            channel: &'a str,
            template_id: Option<&'a str>,
            data: Option<serde_json::Value>,
            created_at: Option<String>,
            updated_at: Option<String>,
            sent_at: Option<String>,
            read_at: Option<String>,
            expires_at: Option<String>,
        }
        let time = |t: Option<PgTime>| t.map(|t| rfc3339(t.unix()));
        let text = Text {
            id: &self.id,
            user_id: &self.user_id,
            title: &self.title,
            message: &self.message,
            kind: &self.kind,
            status: &self.status,
            priority: &self.priority,
            channel: &self.channel,
            template_id: self.template_id.as_deref(),
            data: self.data.as_deref().map(|raw| serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))),
            created_at: time(self.created_at),
            updated_at: time(self.updated_at),
            sent_at: time(self.sent_at),
            read_at: time(self.read_at),
            expires_at: time(self.expires_at),
        };
        serde_json::to_string(&text).unwrap_or_default()
    }
}

/// `data` as the old service would have written its `map[string]string`: Go's `encoding/json` (keys
/// sorted, `&<>` escaped). No pairs → NULL: the old entity's map was nil unless the client sent `data`,
/// a nil map is what its JSON `null` (§5.2) came from, and the engine keeps no difference between an
/// absent and an empty map, so the common case wins.
fn data_json(pairs: &[(String, String)]) -> Result<Option<String>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let sorted: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bytes = to_go_json(&sorted).map_err(|e| format!("data: {e}"))?;
    String::from_utf8(bytes).map(Some).map_err(|e| format!("data: {e}"))
}

/// `150.00` → `150`, `2499.990` → `2499.99`; text without a fraction (or `NaN`) is left alone.
fn trim_numeric(text: &str) -> String {
    match text.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") }
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_is_trimmed_only_in_the_fraction() {
        assert_eq!(trim_numeric("150.00"), "150");
        assert_eq!(trim_numeric("2499.990"), "2499.99");
        assert_eq!(trim_numeric("100"), "100");
        assert_eq!(trim_numeric("-0.50"), "-0.5");
        assert_eq!(trim_numeric("NaN"), "NaN");
    }

    #[test]
    fn times_shift_to_postgres_epoch_and_back() {
        assert_eq!(PgTime::from_unix(PG_EPOCH_MICROS), Ok(PgTime(0)));
        assert_eq!(PgTime::from_unix(1_714_558_830_123_456).map(PgTime::unix), Ok(1_714_558_830_123_456));
        assert!(PgTime::from_unix(i64::MIN).is_err());
        assert_eq!(PgTime(i64::MAX).unix(), i64::MAX);
    }

    #[test]
    fn data_is_go_json_with_sorted_keys_or_null() {
        let pairs = vec![("b".to_string(), "<x>".to_string()), ("a".to_string(), "1 & 2".to_string())];
        assert_eq!(data_json(&pairs), Ok(Some(r#"{"a":"1 \u0026 2","b":"\u003cx\u003e"}"#.to_string())));
        assert_eq!(data_json(&[]), Ok(None));
    }
}
