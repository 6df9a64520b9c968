//! What the inputs of a route are, as the handlers and the engine check them: the type and bounds of each
//! path and query parameter (declared in the route table) and of each request-body field (declared beside
//! the body type). The OpenAPI document is written from these declarations; the bounds are the
//! constants the checks use, never copies of them.

use kassa_engine::limits;
use kassa_engine::{PAGE_LIMIT_MAX, PAGE_OFFSET_MAX};

use super::ApiConfig;

/// Where a parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

/// Which default page size a `limit` falls back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitDefault {
    Page,
    Notification,
}

/// The type and bounds of one input value.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// A key in a path or query (`http::segment`): 1 to `max` bytes, no control characters.
    Key(usize),
    /// Body text of at most `max` bytes; tab and newline allowed, other control characters not (the
    /// engine's rule). `required` fields must not be blank.
    Text(usize),
    /// One of these strings.
    OneOf(fn() -> Vec<&'static str>),
    /// A filter value that is not checked: any text; values outside `known` match nothing.
    Filter(fn() -> Vec<&'static str>),
    /// A decimal amount as path text (`29.99`): optional `-`, at most the currency's fraction digits,
    /// at most `kassa_engine::money::AMOUNT_MAJOR_MAX` in magnitude.
    AmountText,
    /// A JSON number amount in the shop currency, at least `min_minor` and at most `max_minor` minor units.
    Amount { min_minor: i64, max_minor: i64 },
    /// A time: RFC 3339 (`2024-05-01T12:00:00Z`, offsets allowed) or a date (`2024-05-01`).
    Time,
    /// Page size: 1 to the configured maximum.
    Limit(LimitDefault),
    /// Page offset: 0 to `PAGE_OFFSET_MAX`.
    Offset,
    /// An object of string values: at most `limits::MAP_ENTRIES_MAX` entries, keys 1 to
    /// `TEXT_SHORT_MAX` bytes, values at most `TEXT_LONG_MAX` bytes.
    StringMap,
    /// An array of keys (at most `max` of them, each 1 to `key_max` bytes).
    Keys { max: usize, key_max: usize },
    /// Any string: the route does not read it.
    Ignored,
}

/// A path or query parameter of a route.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub at: In,
    pub kind: Kind,
    pub required: bool,
    pub note: &'static str,
}

impl Param {
    pub const fn path(name: &'static str, kind: Kind) -> Param {
        Param { name, at: In::Path, kind, required: true, note: "" }
    }
    pub const fn query(name: &'static str, kind: Kind) -> Param {
        Param { name, at: In::Query, kind, required: false, note: "" }
    }
    pub const fn required(mut self) -> Param {
        self.required = true;
        self
    }
    pub const fn note(mut self, note: &'static str) -> Param {
        self.note = note;
        self
    }
}

/// A field of a request body.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Required: absent, `null` (and, for text, blank) is a 400.
    pub required: bool,
    pub note: &'static str,
}

impl Field {
    pub const fn required(name: &'static str, kind: Kind) -> Field {
        Field { name, kind, required: true, note: "" }
    }
    pub const fn optional(name: &'static str, kind: Kind) -> Field {
        Field { name, kind, required: false, note: "" }
    }
    pub const fn note(mut self, note: &'static str) -> Field {
        self.note = note;
        self
    }
}

pub const LIMIT: Param = Param::query("limit", Kind::Limit(LimitDefault::Page));
pub const OFFSET: Param = Param::query("offset", Kind::Offset);
pub const PAGED: [Param; 2] = [LIMIT, OFFSET];

/// The largest page size a request may ask for.
pub fn limit_max(cfg: &ApiConfig) -> usize {
    cfg.page_limit_max.min(PAGE_LIMIT_MAX)
}

pub fn limit_default(cfg: &ApiConfig, which: LimitDefault) -> usize {
    let default = match which {
        LimitDefault::Page => cfg.page_limit_default,
        LimitDefault::Notification => cfg.notification_limit_default,
    };
    default.min(limit_max(cfg))
}

pub const OFFSET_MAX: usize = PAGE_OFFSET_MAX;

/// Checks a JSON body against its declared fields, as the engine checks a request. For the one route
/// whose engine call skips refused items instead of reporting them (bulk notifications), so that a body
/// the document calls invalid is a 400 there too.
pub fn check(fields: &[Field], body: &serde_json::Value) -> Result<(), String> {
    let object = body.as_object().ok_or("the body must be a JSON object")?;
    for f in fields {
        match object.get(f.name).filter(|v| !v.is_null()) {
            None if f.required => return Err(format!("{} is required", f.name)),
            None => {}
            Some(v) => check_value(f.name, f.kind, f.required, v)?,
        }
    }
    Ok(())
}

fn check_text(name: &str, value: &serde_json::Value, max: usize, non_blank: bool, controls_ok: &[char]) -> Result<(), String> {
    let text = value.as_str().ok_or_else(|| format!("{name} must be a string"))?;
    if non_blank && text.trim().is_empty() {
        return Err(format!("validation failed: {name} is required"));
    }
    if text.len() > max {
        return Err(format!("validation failed: {name} is longer than {max} bytes"));
    }
    if text.chars().any(|c| c.is_control() && !controls_ok.contains(&c)) {
        return Err(format!("validation failed: {name} contains control characters"));
    }
    Ok(())
}

fn check_value(name: &str, kind: Kind, required: bool, v: &serde_json::Value) -> Result<(), String> {
    const TAB_NEWLINE: &[char] = &['\t', '\n'];
    match kind {
        Kind::Text(max) => check_text(name, v, max, required, TAB_NEWLINE),
        Kind::Key(max) => check_text(name, v, max, true, &[]),
        Kind::OneOf(values) => {
            let text = v.as_str().ok_or_else(|| format!("{name} must be a string"))?;
            let values = values();
            if values.contains(&text) { Ok(()) } else { Err(format!("validation failed: {name} must be one of {}", values.join(", "))) }
        }
        Kind::Int { min, max } => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!("{name} must be a whole number between {min} and {max}")),
        },
        Kind::Time => {
            let text = v.as_str().ok_or_else(|| format!("{name} must be a string"))?;
            crate::wire::parse_time(text).map(|_| ()).map_err(|e| format!("{name}: {e}"))
        }
        Kind::StringMap => {
            let map = v.as_object().ok_or_else(|| format!("{name} must be an object"))?;
            if map.len() > limits::MAP_ENTRIES_MAX {
                return Err(format!("validation failed: {name} has more than {} entries", limits::MAP_ENTRIES_MAX));
            }
            for (k, value) in map {
                check_text(name, &serde_json::Value::from(k.as_str()), limits::TEXT_SHORT_MAX, true, TAB_NEWLINE)?;
                check_text(name, value, limits::TEXT_LONG_MAX, false, TAB_NEWLINE)?;
            }
            Ok(())
        }
        Kind::Keys { max, key_max } => {
            let items = v.as_array().ok_or_else(|| format!("{name} must be an array"))?;
            if items.len() > max {
                return Err(format!("at most {max} {name}"));
            }
            items.iter().try_for_each(|item| check_text(name, item, key_max, true, &[]))
        }
        Kind::Ignored => v.as_str().map(|_| ()).ok_or_else(|| format!("{name} must be a string")),
        // Path and query kinds, and amounts, which bodies parse themselves.
        Kind::Filter(_) | Kind::AmountText | Kind::Amount { .. } | Kind::Limit(_) | Kind::Offset => Ok(()),
    }
}

/// Body text limits of the engine.
pub const SHORT: Kind = Kind::Text(limits::TEXT_SHORT_MAX);
pub const LONG: Kind = Kind::Text(limits::TEXT_LONG_MAX);
pub const USER_ID: Kind = Kind::Key(limits::USER_ID_MAX);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_checked_against_their_declared_fields() {
        fn colours() -> Vec<&'static str> {
            vec!["red", "blue"]
        }
        let fields = [
            Field::required("title", SHORT),
            Field::optional("colour", Kind::OneOf(colours)),
            Field::optional("count", Kind::Int { min: 1, max: 3 }),
            Field::optional("data", Kind::StringMap),
            Field::optional("at", Kind::Time),
            Field::required("users", Kind::Keys { max: 2, key_max: 4 }),
        ];
        let ok = json!({"title": "a\tb", "colour": "red", "count": 3, "data": {"k": "v"}, "at": "2024-05-01", "users": ["u1"]});
        assert_eq!(check(&fields, &ok), Ok(()));
        assert_eq!(check(&fields, &json!({"title": "t", "users": [], "colour": null})), Ok(()), "null is absent");
        let long = "x".repeat(limits::TEXT_SHORT_MAX + 1);
        for bad in [
            json!([]),
            json!({"users": []}),
            json!({"title": "  ", "users": []}),
            json!({"title": long, "users": []}),
            json!({"title": "a\u{7}", "users": []}),
            json!({"title": 5, "users": []}),
            json!({"title": "t", "users": [], "colour": "green"}),
            json!({"title": "t", "users": [], "count": 4}),
            json!({"title": "t", "users": [], "count": 1.5}),
            json!({"title": "t", "users": [], "data": {"k": 1}}),
            json!({"title": "t", "users": [], "data": {"": "v"}}),
            json!({"title": "t", "users": [], "at": "soon"}),
            json!({"title": "t", "users": ["u1", "u2", "u3"]}),
            json!({"title": "t", "users": ["toolong"]}),
            json!({"title": "t", "users": [""]}),
        ] {
            assert!(check(&fields, &bad).is_err(), "{bad}");
        }
    }
}
