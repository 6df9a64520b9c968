//! `payments` and `payment_items` rows as MariaDB holds them: built from a [`Payment`] (refusing what the
//! old columns cannot hold) or decoded from a row read back, and rendered the same canonical way from
//! both so that `verify` compares like with like.

use std::collections::BTreeMap;

use kassa_engine::money::{self, Currency};
use kassa_engine::time::rfc3339_micros;
use kassa_engine::wire::to_go_json;
use kassa_engine::{Micros, Payment, PaymentItem};
use mysql_async::Value;
use serde::Serialize;

/// The old `varchar(191)` columns (191 characters: the longest utf8mb4 key InnoDB indexed by default).
const VARCHAR_MAX: usize = 191;

/// A `datetime(3)` value in UTC. The engine keeps microseconds; the old column holds milliseconds, so the
/// microseconds below the millisecond are truncated (not rounded), as MariaDB itself stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Datetime3 {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    millis: u16,
}

impl Datetime3 {
    /// The UTC datetime of `micros`, or why MariaDB's `datetime` (years 1000 to 9999) cannot hold it.
    pub(super) fn of_micros(micros: Micros) -> Result<Datetime3, String> {
        // `YYYY-MM-DDTHH:MM:SS.ffffffZ`; a year outside 0000-9999 is written with a sign and longer.
        let text = rfc3339_micros(micros);
        let b = text.as_bytes();
        let out_of_range = || format!("time {micros} µs is outside MariaDB's datetime range (years 1000 to 9999)");
        if b.len() != 27 || !b[0].is_ascii_digit() {
            return Err(out_of_range());
        }
        let num = |from: usize, to: usize| text.get(from..to).and_then(|part| part.parse::<u32>().ok()).ok_or_else(out_of_range);
        let year = u16::try_from(num(0, 4)?).map_err(|_| out_of_range())?;
        if year < 1000 {
            return Err(out_of_range());
        }
        let small = |v: u32| u8::try_from(v).map_err(|_| out_of_range());
        Ok(Datetime3 {
            year,
            month: small(num(5, 7)?)?,
            day: small(num(8, 10)?)?,
            hour: small(num(11, 13)?)?,
            minute: small(num(14, 16)?)?,
            second: small(num(17, 19)?)?,
            millis: u16::try_from(num(20, 26)? / 1000).map_err(|_| out_of_range())?,
        })
    }

    pub(super) fn value(self) -> Value {
        Value::Date(self.year, self.month, self.day, self.hour, self.minute, self.second, u32::from(self.millis) * 1000)
    }

    fn of_value(value: Value, column: &str) -> Result<Option<Datetime3>, String> {
        match value {
            Value::NULL => Ok(None),
            Value::Date(year, month, day, hour, minute, second, micros) => {
                let millis = u16::try_from(micros / 1000).map_err(|_| format!("{column}: fraction {micros} out of range"))?;
                Ok(Some(Datetime3 { year, month, day, hour, minute, second, millis }))
            }
            other => Err(format!("{column}: expected a datetime, found {other:?}")),
        }
    }
}

impl Serialize for Datetime3 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Datetime3 { year, month, day, hour, minute, second, millis } = *self;
        s.collect_str(&format_args!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{millis:03}"))
    }
}

/// One `payments` row (columns in the table's order) with its `payment_items` rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct PaymentRow {
    pub id: String,
    pub user_id: String,
    pub basket_id: String,
    pub amount: f64,
    pub currency: String,
    pub status: String,
    pub method: String,
    pub provider: String,
    pub provider_id: Option<String>,
    pub description: Option<String>,
    /// JSON text of the string map (the old system's defect fixed: it could not write the map at all).
    pub metadata: Option<String>,
    pub created_at: Option<Datetime3>,
    pub updated_at: Option<Datetime3>,
    pub processed_at: Option<Datetime3>,
    pub expires_at: Option<Datetime3>,
    /// Sorted by id: the table keeps no order of its own.
    pub items: Vec<ItemRow>,
}

/// One `payment_items` row (columns in the table's order).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct ItemRow {
    pub id: String,
    pub payment_id: String,
    pub product_id: i64,
    pub name: String,
    pub quantity: i64,
    pub price: f64,
    pub subtotal: f64,
    pub category: Option<String>,
    pub created_at: Option<Datetime3>,
}

pub(super) const PAYMENT_COLUMNS: [&str; 15] = [
    "id",
    "user_id",
    "basket_id",
    "amount",
    "currency",
    "status",
    "method",
    "provider",
    "provider_id",
    "description",
    "metadata",
    "created_at",
    "updated_at",
    "processed_at",
    "expires_at",
];

pub(super) const ITEM_COLUMNS: [&str; 9] =
    ["id", "payment_id", "product_id", "name", "quantity", "price", "subtotal", "category", "created_at"];

/// An exact amount as the nearest double: through its decimal text, never through float arithmetic.
fn double(minor: i64, currency: Currency) -> Result<f64, String> {
    let text = money::format_minor(minor, currency);
    text.parse::<f64>().map_err(|e| format!("amount {text}: {e}"))
}

fn varchar(column: &str, value: &str) -> Result<String, String> {
    let chars = value.chars().count();
    if chars > VARCHAR_MAX {
        return Err(format!("{column} has {chars} characters; the column holds {VARCHAR_MAX}"));
    }
    Ok(value.to_string())
}

fn stamp(column: &str, micros: Micros) -> Result<Option<Datetime3>, String> {
    Datetime3::of_micros(micros).map(Some).map_err(|e| format!("{column}: {e}"))
}

/// The metadata column: the map as Go's encoder writes one (keys sorted, HTML escaped), NULL when empty.
fn metadata_json(pairs: &[(String, String)]) -> Result<Option<String>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bytes = to_go_json(&map).map_err(|e| format!("metadata: {e}"))?;
    String::from_utf8(bytes).map(Some).map_err(|e| format!("metadata: {e}"))
}

impl PaymentRow {
    /// The rows of `p`, or why the old columns cannot hold it. Money is in the payment's currency (the
    /// shop's `fallback` if the code is unknown).
    pub(super) fn of(p: &Payment, fallback: Currency) -> Result<PaymentRow, String> {
        let currency = Currency::from_code(&p.currency).unwrap_or(fallback);
        let mut items = p.items.iter().map(|item| ItemRow::of(item, &p.id, currency)).collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(twice) = items.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(format!("two items have the id {}", twice[0].id));
        }
        Ok(PaymentRow {
            id: varchar("id", &p.id)?,
            user_id: varchar("user_id", &p.user_id)?,
            basket_id: varchar("basket_id", &p.basket_id)?,
            amount: double(p.amount, currency)?,
            currency: varchar("currency", &p.currency)?,
            status: p.status.as_str().to_string(),
            method: p.method.clone(),
            provider: p.provider.clone(),
            // Go strings, not pointers: the old service wrote "" rather than NULL.
            provider_id: Some(varchar("provider_id", &p.provider_id)?),
            description: Some(p.description.clone()),
            metadata: metadata_json(&p.metadata)?,
            created_at: stamp("created_at", p.created_at)?,
            updated_at: stamp("updated_at", p.updated_at)?,
            processed_at: p.processed_at.map(|t| stamp("processed_at", t)).transpose()?.flatten(),
            expires_at: p.expires_at.map(|t| stamp("expires_at", t)).transpose()?.flatten(),
            items,
        })
    }

    /// The `payments` columns' values, in [`PAYMENT_COLUMNS`] order.
    pub(super) fn values(&self) -> [Value; 15] {
        let text = |s: &str| Value::from(s);
        let opt_text = |s: &Option<String>| s.as_deref().map_or(Value::NULL, Value::from);
        let time = |t: Option<Datetime3>| t.map_or(Value::NULL, Datetime3::value);
        [
            text(&self.id),
            text(&self.user_id),
            text(&self.basket_id),
            Value::Double(self.amount),
            text(&self.currency),
            text(&self.status),
            text(&self.method),
            text(&self.provider),
            opt_text(&self.provider_id),
            opt_text(&self.description),
            opt_text(&self.metadata),
            time(self.created_at),
            time(self.updated_at),
            time(self.processed_at),
            time(self.expires_at),
        ]
    }

    /// A `payments` row read back (columns in [`PAYMENT_COLUMNS`] order), without its items yet.
    pub(super) fn of_values(values: Vec<Value>) -> Result<PaymentRow, String> {
        let mut v = Columns::new(values, &PAYMENT_COLUMNS)?;
        Ok(PaymentRow {
            id: v.text()?,
            user_id: v.text()?,
            basket_id: v.text()?,
            amount: v.double()?,
            currency: v.text()?,
            status: v.text()?,
            method: v.text()?,
            provider: v.text()?,
            provider_id: v.opt_text()?,
            description: v.opt_text()?,
            metadata: v.opt_text()?,
            created_at: v.time()?,
            updated_at: v.time()?,
            processed_at: v.time()?,
            expires_at: v.time()?,
            items: Vec::new(),
        })
    }

    /// The text `verify` compares: every column and every item, as held.
    pub(super) fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("unrenderable: {e}"))
    }
}

impl ItemRow {
    fn of(item: &PaymentItem, payment_id: &str, currency: Currency) -> Result<ItemRow, String> {
        let subtotal = item.price.checked_mul(item.quantity).ok_or_else(|| format!("item {}: subtotal overflows", item.id))?;
        Ok(ItemRow {
            id: varchar("item id", &item.id)?,
            payment_id: payment_id.to_string(),
            product_id: i64::try_from(item.product_id)
                .map_err(|_| format!("item {}: product_id {} exceeds bigint", item.id, item.product_id))?,
            name: item.name.clone(),
            quantity: item.quantity,
            price: double(item.price, currency)?,
            subtotal: double(subtotal, currency)?,
            category: Some(item.category.clone()),
            created_at: stamp("item created_at", item.created_at)?,
        })
    }

    /// The `payment_items` columns' values, in [`ITEM_COLUMNS`] order.
    pub(super) fn values(&self) -> [Value; 9] {
        [
            Value::from(self.id.as_str()),
            Value::from(self.payment_id.as_str()),
            Value::Int(self.product_id),
            Value::from(self.name.as_str()),
            Value::Int(self.quantity),
            Value::Double(self.price),
            Value::Double(self.subtotal),
            self.category.as_deref().map_or(Value::NULL, Value::from),
            self.created_at.map_or(Value::NULL, Datetime3::value),
        ]
    }

    /// A `payment_items` row read back (columns in [`ITEM_COLUMNS`] order).
    pub(super) fn of_values(values: Vec<Value>) -> Result<ItemRow, String> {
        let mut v = Columns::new(values, &ITEM_COLUMNS)?;
        Ok(ItemRow {
            id: v.text()?,
            payment_id: v.text()?,
            product_id: v.int()?,
            name: v.text()?,
            quantity: v.int()?,
            price: v.double()?,
            subtotal: v.double()?,
            category: v.opt_text()?,
            created_at: v.time()?,
        })
    }
}

/// A row's values (NULL for any the driver did not hand over).
pub(super) fn values_of(row: mysql_async::Row) -> Vec<Value> {
    row.unwrap_raw().into_iter().map(|v| v.unwrap_or(Value::NULL)).collect()
}

/// Decodes a row's values in column order, naming the column in every error (the driver's own
/// conversions panic on a value of an unexpected type).
pub(super) struct Columns {
    values: std::iter::Zip<std::vec::IntoIter<Value>, std::slice::Iter<'static, &'static str>>,
}

impl Columns {
    pub(super) fn new(values: Vec<Value>, names: &'static [&'static str]) -> Result<Columns, String> {
        if values.len() != names.len() {
            return Err(format!("expected {} columns, found {}", names.len(), values.len()));
        }
        Ok(Columns { values: values.into_iter().zip(names.iter()) })
    }

    fn next(&mut self) -> Result<(Value, &'static str), String> {
        self.values.next().map(|(v, n)| (v, *n)).ok_or_else(|| "too few columns".to_string())
    }

    fn opt_text(&mut self) -> Result<Option<String>, String> {
        match self.next()? {
            (Value::NULL, _) => Ok(None),
            (Value::Bytes(b), name) => String::from_utf8(b).map(Some).map_err(|e| format!("{name}: {e}")),
            (other, name) => Err(format!("{name}: expected text, found {other:?}")),
        }
    }

    pub(super) fn text(&mut self) -> Result<String, String> {
        match self.next()? {
            (Value::Bytes(b), name) => String::from_utf8(b).map_err(|e| format!("{name}: {e}")),
            (other, name) => Err(format!("{name}: expected text, found {other:?}")),
        }
    }

    pub(super) fn uint(&mut self) -> Result<u64, String> {
        match self.next()? {
            (Value::UInt(x), _) => Ok(x),
            (Value::Int(x), name) => u64::try_from(x).map_err(|_| format!("{name}: {x} out of range")),
            (Value::Bytes(b), name) => {
                std::str::from_utf8(&b).ok().and_then(|t| t.parse().ok()).ok_or_else(|| format!("{name}: not a number"))
            }
            (other, name) => Err(format!("{name}: expected an integer, found {other:?}")),
        }
    }

    fn double(&mut self) -> Result<f64, String> {
        match self.next()? {
            (Value::Double(x), _) => Ok(x),
            (Value::Float(x), _) => Ok(f64::from(x)),
            (other, name) => Err(format!("{name}: expected a double, found {other:?}")),
        }
    }

    fn int(&mut self) -> Result<i64, String> {
        match self.next()? {
            (Value::Int(x), _) => Ok(x),
            (Value::UInt(x), name) => i64::try_from(x).map_err(|_| format!("{name}: {x} out of range")),
            (other, name) => Err(format!("{name}: expected an integer, found {other:?}")),
        }
    }

    fn time(&mut self) -> Result<Option<Datetime3>, String> {
        let (value, name) = self.next()?;
        Datetime3::of_value(value, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_truncate_to_milliseconds() {
        // 2024-05-01T10:20:30.123999Z: the 999 µs are dropped, not rounded up.
        let t = Datetime3::of_micros(1_714_558_830_123_999).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""2024-05-01 10:20:30.123""#);
        assert_eq!(t.value(), Value::Date(2024, 5, 1, 10, 20, 30, 123_000));
        // Before 1970 the fraction still counts forward from its second.
        let t = Datetime3::of_micros(-1).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""1969-12-31 23:59:59.999""#);
        // The year 702 and a year before the common era: outside MariaDB's datetime.
        assert!(Datetime3::of_micros(-40_000_000_000_000_000).is_err());
        assert!(Datetime3::of_micros(i64::MIN).is_err());
    }

    #[test]
    fn doubles_come_from_the_exact_text() {
        assert_eq!(double(2999, Currency::USD), Ok(29.99));
        assert_eq!(double(10, Currency::USD), Ok(0.1));
        assert_eq!(double(-150, Currency::USD), Ok(-1.5));
        let yen = Currency::from_code("JPY").unwrap();
        assert_eq!(double(2999, yen), Ok(2999.0));
    }

    #[test]
    fn metadata_is_go_json() {
        let pairs = vec![("z".to_string(), "a & b".to_string()), ("a".to_string(), "<1>".to_string())];
        assert_eq!(metadata_json(&pairs).unwrap().as_deref(), Some(r#"{"a":"\u003c1\u003e","z":"a \u0026 b"}"#));
        assert_eq!(metadata_json(&[]).unwrap(), None);
    }
}
