//! The pieces every hand-written answer is made of (`product_json`, `basket_json`): Go's JSON for a
//! field's key, an integer and a time, appended to one buffer.

use kassa_engine::time::push_rfc3339;

/// `,"name":`: the separator and key before every field but the first.
pub fn push_field(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

pub fn push_int(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// A time as the answers' RFC 3339 string, quoted.
pub fn push_time(out: &mut String, micros: i64) {
    out.push('"');
    push_rfc3339(out, micros);
    out.push('"');
}

/// What the tests of the hand-written answers generate.
#[cfg(test)]
pub mod strategies {
    use kassa_engine::Currency;
    use proptest::prelude::*;

    /// Any text, and text made of what Go's encoder escapes (control characters, quotes, `&<>`,
    /// U+2028/9) among multi-byte and astral characters.
    pub const TEXT: &str = "(?s).{0,40}|[\"\\\\&<>\u{2028}\u{2029}\u{0}-\u{1f}é€𝄞 a]{0,40}";

    /// Currencies with 2, 0 and 3 decimals.
    pub fn currency() -> impl Strategy<Value = Currency> {
        prop_oneof![Just("USD"), Just("JPY"), Just("BHD"), Just("EUR")].prop_map(|code| Currency::from_code(code).unwrap())
    }
}
