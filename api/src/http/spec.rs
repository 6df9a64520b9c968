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
    /// A keyset cursor (`kassa_engine::Cursor`, `key:id`) from a previous page's `next_after`.
    Cursor,
    /// An object of string values: at most `limits::MAP_ENTRIES_MAX` entries, keys 1 to
    /// `TEXT_SHORT_MAX` bytes, values at most `TEXT_LONG_MAX` bytes.
    StringMap,
    /// An array of keys (at most `max` of them, each 1 to `key_max` bytes).
    Keys { max: usize, key_max: usize },
    /// Any string: the route does not read it.
    Ignored,
    /// `true` or `false`.
    Bool,
    /// Exactly this many ASCII digits, as text (a card's last four).
    Digits(usize),
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
pub const AFTER: Param = Param::query("after", Kind::Cursor);
/// Product listings page by offset and by keyset.
pub const KEYSET_PAGED: [Param; 3] = [LIMIT, OFFSET, AFTER];
/// A cursor's text: the listing's sort key, a colon, the product id.
pub const CURSOR_PATTERN: &str = "^-?[0-9]{1,40}:[0-9]{1,20}$";
pub const CURSOR_LEN_MAX: usize = 64;

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

/// Body text limits of the engine.
pub const SHORT: Kind = Kind::Text(limits::TEXT_SHORT_MAX);
pub const LONG: Kind = Kind::Text(limits::TEXT_LONG_MAX);
pub const USER_ID: Kind = Kind::Key(limits::USER_ID_MAX);
