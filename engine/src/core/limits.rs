//! Business limits; every one of them bounds something a client could otherwise grow without end.

pub const QUANTITY_MAX: i64 = 10_000;
pub const BASKET_LINES_MAX: usize = 200;
pub const STOCK_MAX: i64 = 1_000_000_000;
pub const TEXT_SHORT_MAX: usize = 256;
pub const TEXT_LONG_MAX: usize = 4096;
pub const MAP_ENTRIES_MAX: usize = 64;
pub const USER_ID_MAX: usize = 128;
/// Longest id of a record a client may name (a stored payment method in a checkout).
pub const ID_MAX: usize = 128;
/// Highest unit price in minor units (10^9 major units in a 2-digit currency). With QUANTITY_MAX and
/// BASKET_LINES_MAX it keeps every line and total far inside i64: 10^11 · 10^4 · 200 = 2·10^17.
pub const PRICE_MINOR_MAX: i64 = 100_000_000_000;
/// Refunds one payment may have asked for (failed ones included).
pub const REFUNDS_MAX: usize = 100;
/// Most attempts a notification keeps in its record (the oldest go first).
pub const DELIVERY_ATTEMPTS_KEPT: usize = 64;
/// Most attempts a channel may make per delivery (fewer than are kept, so a delivery's are all there).
pub const DELIVERY_ATTEMPTS_MAX: u32 = 32;
/// Most payment methods one user may store.
pub const WALLET_METHODS_MAX: usize = 20;
