//! Kassa's engine: thread-per-core shards that own disjoint slices of the data, a durable group-committed
//! journal per shard, fjall/redb stores as views of that journal, and checkout with stock reservations
//! so that nothing is ever sold twice.
//!
//! The path of a write: [`Engine::execute`] routes a [`Command`] to the shard that owns it; the shard's
//! core applies it in memory and emits [`Event`]s; the shard appends them to its journal and answers once
//! they are durable; the events are then projected into the shard's stores, from which any thread reads.
//! The journal is also the change feed ([`Engine::subscribe`]).
//!
//! The crate root is the whole public API: the [`Engine`] handle and its configuration, the domain
//! records, commands and their outcomes, errors, queries, the feed, and [`EngineStats`]. Shards, the
//! core, the journal and the stores are internal; the `internals` feature exposes the journal and store
//! building blocks to the benchmarks and fuzz targets only.

mod backup;
pub mod cmd;
mod command;
mod core;
mod delivery;
mod engine;
mod event;
mod feed;
mod migrate;
// The journal's and the stores' APIs are whole building blocks: parts of them serve only their own tests,
// the benchmarks and the fuzz targets (feature `internals`, which makes them public under `internals`).
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod journal;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod journal;
mod model;
pub mod money;
mod product_view;
mod provider_call;
mod query;
mod shard;
mod snapshot;
mod stats;
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod store;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod store;
pub mod time;
mod views;
pub mod wire;

pub use backup::{BackupError, BackupManifest, FileSum, ShardPart, restore, verify_backup};
pub use cmd::{Answer, Cmd, Count, Deleted};
pub use command::{
    Command, EngineError, ErrorKind, IdempotencyKey, NotificationInput, PaymentInput, PaymentMethodInput, ProductInput, Refusal,
};
pub use core::limits;

/// Which shard owns what (products by id, everything of a user by user id): for consumers that must tell
/// which shard's cursor covers a row. The hashes never change.
pub mod placement {
    pub use crate::core::{shard_of_product, shard_of_user};
}
pub use delivery::{DeliveryCall, DeliveryCallSender, DeliveryPolicy, DeliveryResult};
pub use engine::{Engine, EngineConfig, EngineInfo, OpenError};
pub use event::{BasketCause, BasketGone, Event, PaymentCause, ProductCause};
pub use feed::{CursorFigures, FeedCursor, FeedError, FeedRecord, Subscription};
pub use journal::IoMode;
pub use model::{
    Basket, BasketLine, DeliveryAttempt, Holding, IdemRef, IdempotencyRecord, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND,
    Micros, Notification, PAYMENT_METHODS, Payment, PaymentItem, PaymentMethod, PaymentStatus, Product, Refund, RefundStatus, Reservation,
    ReservationState, Wallet, notify, now_micros,
};
pub use money::Currency;
pub use provider_call::{
    CallOutcome, ChargeCall, NoticeAbout, ProviderCall, ProviderCallSender, ProviderNotice, RefundCall, WebhookRefusal, charge_key,
};
pub use query::{
    CategoryStats, Cursor, NotificationFilter, NotificationPage, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX, Page, PaymentFilter, ProductQuery,
    ProductStats,
};
pub use shard::Durability;
pub use snapshot::ShardSnapshot;
pub use stats::{EngineStats, ShardFigures};
pub use views::StoreChoice;

/// The journal and store building blocks, for the engine's benchmarks and fuzz targets (feature
/// `internals`). Not part of the API: nothing outside `benches/` and `fuzz/` may use it.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::event::{EVENT_KIND, EVENT_SCHEMA};
    pub use crate::journal;
    pub use crate::migrate::{SCHEMA as RECORD_SCHEMA, decode_event as decode_event_of_schema};
    pub use crate::store;
    /// The stored records' codecs.
    pub mod records {
        pub use crate::views::{
            decode_basket, decode_idempotency, decode_notification, decode_payment, decode_product, decode_reservation, decode_wallet,
            encode,
        };
    }
}
