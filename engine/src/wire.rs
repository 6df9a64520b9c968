//! Wire formats shared by the API (HTTP, gRPC) and the adapters (the old estate's rows, keys and events):
//! RFC 3339 times from micros (from [`crate::time`]), Go duration strings, exact money in JSON (decimal text
//! in, decimal text out, never through a float) and Go-compatible JSON output.

use std::io;

use crate::money::{self, Currency};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// RFC 3339 times, written as Go's `time.Time` writes them and read as the API accepts them: one
/// implementation (on jiff) for every crate, in the engine.
pub use crate::time::{TimeError, parse_time, rfc3339, rfc3339_seconds};

/// Go's `time.Duration.String()` for a span in micros: `23h59m58.123456s`, `1.5ms`, `0s`.
pub fn go_duration(micros: i64) -> String {
    if micros == 0 {
        return "0s".into();
    }
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let width = unit.ilog10() as usize;
            format!("{whole}.{}", format!("{rest:0width$}").trim_end_matches('0'))
        }
    };
    if abs < 1000 {
        return format!("{sign}{abs}µs");
    }
    if abs < 1_000_000 {
        return format!("{sign}{}ms", frac(abs, 1000));
    }
    let total_secs = abs / 1_000_000;
    let (h, m) = (total_secs / 3600, total_secs % 3600 / 60);
    let s = frac(abs % 60_000_000, 1_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// A money amount for JSON output: the exact decimal as a JSON number (`29.99`, `150`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }
}

/// A sum that may exceed i64 (e.g. Σ price × stock), formatted exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideMoney {
    pub minor: i128,
    pub currency: Currency,
}

pub fn format_minor_wide(minor: i128, currency: Currency) -> String {
    if let Ok(small) = i64::try_from(minor) {
        return money::format_minor(small, currency);
    }
    let scale = i128::from(currency.scale());
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let (int_part, frac) = (abs / scale as u128, abs % scale as u128);
    if frac == 0 {
        return format!("{sign}{int_part}");
    }
    let width = usize::from(currency.exponent());
    format!("{sign}{int_part}.{}", format!("{frac:0width$}").trim_end_matches('0'))
}

impl Serialize for WideMoney {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(format_minor_wide(self.minor, self.currency)).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = money::format_minor(self.minor, self.currency);
        let raw = RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// A non-money number (a rate, a percentage) written like Go's `encoding/json`: `100`, not `100.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = if self.0.is_finite() { self.0 } else { 0.0 };
        if v.fract() == 0.0 && v.abs() < 1e15 {
            let raw = RawValue::from_string(format!("{}", v as i64)).map_err(serde::ser::Error::custom)?;
            raw.serialize(s)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// A money amount as the client wrote it: the JSON number's exact text, converted later with the shop
/// currency (`money::parse_minor`). Strings, booleans and other types are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyText(pub String);

impl<'de> Deserialize<'de> for MoneyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => Ok(MoneyText(text.to_string())),
            _ => Err(de::Error::custom(format!("expected a decimal number, found {}", text.chars().take(32).collect::<String>()))),
        }
    }
}

impl MoneyText {
    pub fn minor(&self, currency: Currency) -> Result<i64, money::MoneyError> {
        money::parse_minor(&self.0, currency)
    }
}

/// Minor units from a proto `double`: the shortest decimal that round-trips the double is parsed
/// exactly, so `29.99` is 2999 and `29.999` is refused instead of rounded.
pub fn minor_from_f64(value: f64, currency: Currency) -> Result<i64, money::MoneyError> {
    // Rust's `Display` for f64 is the shortest round-trip text and never uses an exponent.
    money::parse_minor(&format!("{value}"), currency)
}

/// Nearest double to an exact amount (for proto `double` fields).
pub fn f64_from_minor(minor: i64, currency: Currency) -> f64 {
    money::format_minor(minor, currency).parse().unwrap_or(0.0)
}

/// Go's `encoding/json` escapes `&`, `<` and `>` in strings; this formatter does the same so that the
/// bytes match the old services (e.g. `"Home \u0026 Kitchen"`).
struct GoFormatter;

/// The bytes an escape can start at: JSON's own (`"`, `\\`, controls) and Go's (`&`, `<`, `>`, and 0xE2,
/// the lead byte of U+2028/U+2029).
const MAY_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    let mut i = 0;
    let others = *b"\"\\&<>\xE2";
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// The first index from `i` on where an escape may start (`bytes.len()` if none): strings are mostly
/// plain, and one table lookup per byte is what keeps writing them cheap.
fn skip_plain(bytes: &[u8], i: usize) -> usize {
    let rest = bytes.get(i..).unwrap_or_default();
    i + rest.iter().position(|&b| MAY_ESCAPE[usize::from(b)]).unwrap_or(rest.len())
}

/// What Go adds to JSON's own escapes, for a byte that may start one: `&`, `<`, `>`, and U+2028/U+2029
/// (UTF-8 `E2 80 A8`/`E2 80 A9`). `None` for every other byte, so runs without them are copied whole.
fn go_escape(bytes: &[u8], i: usize) -> Option<(&'static str, usize)> {
    match bytes[i] {
        b'&' => Some(("\\u0026", 1)),
        b'<' => Some(("\\u003c", 1)),
        b'>' => Some(("\\u003e", 1)),
        0xE2 => match bytes.get(i + 1..i + 3) {
            Some([0x80, 0xA8]) => Some(("\\u2028", 3)),
            Some([0x80, 0xA9]) => Some(("\\u2029", 3)),
            _ => None,
        },
        _ => None,
    }
}

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = skip_plain(bytes, 0);
        while i < bytes.len() {
            match go_escape(bytes, i) {
                Some((esc, consumed)) => {
                    writer.write_all(&bytes[start..i])?;
                    writer.write_all(esc.as_bytes())?;
                    start = i + consumed;
                    i = skip_plain(bytes, start);
                }
                None => i = skip_plain(bytes, i + 1),
            }
        }
        writer.write_all(&bytes[start..])
    }
}

/// `text` as a JSON string, quoted and escaped exactly as [`to_go_json`] writes it (serde_json's escapes:
/// the short forms, else `\u00xx`; then Go's), appended to `out`: for answers written straight from a
/// record rather than through serde.
pub fn push_go_str(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(text.len() + 2);
    out.push('"');
    let (mut start, mut i) = (0, skip_plain(bytes, 0));
    while i < bytes.len() {
        let (escape, consumed) = match bytes[i] {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            0x08 => ("\\b", 1),
            0x0C => ("\\f", 1),
            0..=0x1F => ("", 1),
            _ => match go_escape(bytes, i) {
                Some(found) => found,
                None => {
                    i = skip_plain(bytes, i + 1);
                    continue;
                }
            },
        };
        // Every escape starts at an ASCII byte or at a character's lead byte: a char boundary.
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            let b = bytes[i];
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        } else {
            out.push_str(escape);
        }
        start = i + consumed;
        i = skip_plain(bytes, start);
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// How many bytes [`push_go_str`] writes for `text`. Sizing a page's buffer with it also reads every
/// string of the page in one tight loop, where the cache misses overlap, instead of one at a time
/// between the writes.
pub fn go_str_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut len, mut i) = (text.len() + 2, skip_plain(bytes, 0));
    while i < bytes.len() {
        let (extra, consumed) = match bytes[i] {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0C => (1, 1),
            0..=0x1F | b'&' | b'<' | b'>' => (5, 1),
            _ => match go_escape(bytes, i) {
                Some((escape, consumed)) => (escape.len() - consumed, consumed),
                None => (0, 1),
            },
        };
        len += extra;
        i = skip_plain(bytes, i + consumed);
    }
    len
}

/// Serializes like Go's `encoding/json` (compact, HTML-escaped).
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// FNV-1a, 64 bit: a stable hash (idempotency fingerprints are persisted, so the hash must not change
/// between builds the way `DefaultHasher` may).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so that ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_the_engines() {
        // The formats themselves are tested in crate::time; these are the ones the API writes.
        assert_eq!(rfc3339(1_714_558_830_120_000), "2024-05-01T10:20:30.12Z");
        assert_eq!(rfc3339_seconds(1_714_558_830_123_456), "2024-05-01T10:20:30Z");
        assert_eq!(parse_time("2024-05-01"), Ok(1_714_521_600_000_000));
    }

    /// serde_json's own output with Go's extra escapes applied: an independent reference.
    fn go_reference(text: &str) -> String {
        serde_json::to_string(text)
            .unwrap()
            .replace('&', "\\u0026")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_as_go_writes_them(text in "(?s).{0,64}|[\"\\\\&<>\u{2028}\u{2029}\u{0}-\u{1f}\u{7f}é€𝄞 ]{0,64}") {
            let mut pushed = String::from("x");
            push_go_str(&mut pushed, &text);
            proptest::prop_assert_eq!(&pushed[1..], go_reference(&text));
            proptest::prop_assert_eq!(go_str_len(&text), pushed.len() - 1);
            proptest::prop_assert_eq!(String::from_utf8(to_go_json(&text).unwrap()).unwrap(), go_reference(&text));
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(86_398_123_456), "23h59m58.123456s");
        assert_eq!(go_duration(3_600_000_000), "1h0m0s");
        assert_eq!(go_duration(61_500_000), "1m1.5s");
        assert_eq!(go_duration(1_500), "1.5ms");
        assert_eq!(go_duration(7), "7µs");
        assert_eq!(go_duration(-2_000_000), "-2s");
    }

    #[test]
    fn money_is_exact() {
        let usd = Currency::USD;
        assert_eq!(serde_json::to_string(&Money::new(249_999, usd)).unwrap(), "2499.99");
        assert_eq!(serde_json::to_string(&Money::new(15_000, usd)).unwrap(), "150");
        let t: MoneyText = serde_json::from_str("29.99").unwrap();
        assert_eq!(t.minor(usd), Ok(2999));
        assert!(serde_json::from_str::<MoneyText>("\"29.99\"").is_err());
        let t: MoneyText = serde_json::from_str("0.1").unwrap();
        assert_eq!(t.minor(usd), Ok(10));
        assert!(serde_json::from_str::<MoneyText>("1.999").unwrap().minor(usd).is_err());
        assert_eq!(minor_from_f64(29.99, usd), Ok(2999));
        assert!(minor_from_f64(0.1 + 0.2, usd).is_err());
        assert!(minor_from_f64(f64::NAN, usd).is_err());
        assert!(minor_from_f64(1e300, usd).is_err());
        assert_eq!(f64_from_minor(2999, usd), 29.99);
        assert_eq!(format_minor_wide(i128::from(i64::MAX) * 10 + 5, usd), "922337203685477580.75");
        assert_eq!(format_minor_wide(-1234, usd), "-12.34");
    }

    #[test]
    fn go_floats() {
        assert_eq!(serde_json::to_string(&GoFloat(100.0)).unwrap(), "100");
        assert_eq!(serde_json::to_string(&GoFloat(66.66666666666667)).unwrap(), "66.66666666666667");
        assert_eq!(serde_json::to_string(&GoFloat(f64::NAN)).unwrap(), "0");
    }

    #[test]
    fn go_json_escapes_html() {
        assert_eq!(to_go_json(&"Home & Kitchen <b>").unwrap(), br#""Home \u0026 Kitchen \u003cb\u003e""#.to_vec());
    }
}
