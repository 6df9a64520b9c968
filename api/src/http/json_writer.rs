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
