//! Kassa's engine: thread-per-core shards that own disjoint slices of the data, a durable group-committed
//! journal per shard, fjall/redb stores as views of that journal, and checkout with stock reservations
//! so that nothing is ever sold twice.
//!
//! The path of a write: [`Engine::execute`] routes a [`Command`] to the shard that owns it; the shard's
//! [`core::Core`] applies it in memory and emits [`Event`]s; the shard appends them to its
//! [`journal`] and answers once they are durable; the events are then projected into the shard's stores,
//! from which any thread reads ([`query`]). The journal is also the change feed ([`feed`]).

pub mod command;
pub mod core;
pub mod engine;
pub mod event;
pub mod feed;
pub mod journal;
pub mod model;
pub mod money;
pub mod query;
pub mod shard;
pub mod store;
pub mod time;
pub mod views;

pub use command::{Command, EngineError, ErrorKind, IdempotencyKey, NotificationInput, PaymentInput, ProductInput, Reply, Request};
pub use engine::{Engine, EngineConfig, EngineInfo, OpenError};
pub use event::Event;
pub use feed::{FeedRecord, Subscription};
pub use journal::IoMode;
pub use model::{Basket, BasketLine, Holding, Micros, Notification, Payment, PaymentItem, PaymentStatus, Product};
pub use money::Currency;
pub use query::{NotificationFilter, NotificationPage, Page, PaymentFilter, ProductQuery};
pub use shard::Durability;
pub use views::StoreChoice;
