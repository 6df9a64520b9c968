//! The state machine of one shard, free of threads and I/O so that the threaded driver, recovery and the
//! deterministic simulation all run the very same code.
//!
//! `step` takes one input (a client request, a message from another shard, or a clock tick) and produces
//! effects: journal events (already applied to the in-memory state), messages for other shards, and replies
//! to clients. The driver releases messages and replies only after the events are durable.
//!
//! The core is split by concern: [`apply`] is the only place memory changes (live commands and journal
//! replay alike); [`idempotency`] is the front door of client commands; [`catalog`], [`basket`],
//! [`checkout`] (the payer side and the stock side of the cross-shard protocol) and [`notifications`] hold the
//! commands; [`timers`] the clock-driven work; [`invariants`] what must hold between any two steps.

mod apply;
mod basket;
mod catalog;
mod checkout;
mod due;
mod idempotency;
mod invariants;
pub mod limits;
mod notifications;
mod routing;
mod timers;
mod validate;
mod wallet;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use apply::Loaded;
pub(crate) use checkout::payment_not_found;
pub(crate) use notifications::notification_not_found;
pub use routing::{fnv1a, shard_of_product, shard_of_user};
pub(crate) use validate::validate_notification;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// foldhash: SipHash was 5 % of recovery's CPU over a million keys; foldhash's per-process random seed
// still keeps keys that clients choose (user ids) from being aimed at one bucket.
use foldhash::HashMap;

use rand::{RngCore, SeedableRng};

use crate::command::{
    Command, EngineError, ErrorKind, IdempotencyKey, NotificationInput, Outcome, PaymentInput, ProductInput, Refusal, Reply, Request,
};
use crate::event::{BasketCause, BasketGone, Event, PaymentCause, ProductCause};
use crate::model::*;
use crate::money::Currency;
use crate::provider_call::{CallOutcome, ChargeCall, ProviderCall, RefundCall};
use crate::views::{self, Ks, Writes};
use due::DueSet;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub shards: u32,
    pub currency: Currency,
    pub basket_ttl: Micros,
    pub payment_ttl: Micros,
    /// Extra time a product shard holds a reservation past the payment's expiry, so that a process
    /// that started before the expiry can still commit.
    pub reservation_grace: Micros,
    pub idempotency_ttl: Micros,
    pub low_stock_threshold: i64,
    pub restock_on_refund: bool,
    /// Re-send an unanswered cross-shard message after this long.
    pub redrive_after: Micros,
    /// Providers Kassa charges through (a payment for any other provider records the `provider_id` its
    /// client gives, as the old system did).
    pub charged_providers: Vec<String>,
    /// Ask the provider again about a charge unanswered for this long (longer than a provider call with
    /// its retries takes, so that a slow provider is not asked twice at once).
    pub charge_redrive_after: Micros,
    /// Channels Kassa delivers notifications on (others are only recorded `sent`).
    pub delivered_channels: Vec<crate::delivery::DeliveryPolicy>,
    /// Make a delivery attempt again when its outcome has not come back for this long.
    pub delivery_redrive_after: Micros,
}

impl CoreConfig {
    pub fn new(shards: u32) -> CoreConfig {
        CoreConfig {
            shards,
            currency: Currency::USD,
            basket_ttl: 24 * MICROS_PER_HOUR,
            payment_ttl: 30 * MICROS_PER_MINUTE,
            reservation_grace: 5 * MICROS_PER_MINUTE,
            idempotency_ttl: 24 * MICROS_PER_HOUR,
            low_stock_threshold: 10,
            restock_on_refund: true,
            redrive_after: 2 * MICROS_PER_SECOND,
            charged_providers: Vec::new(),
            charge_redrive_after: 60 * MICROS_PER_SECOND,
            delivered_channels: Vec::new(),
            delivery_redrive_after: 60 * MICROS_PER_SECOND,
        }
    }
}

/// Read access to products owned by other shards (the user's shard prices basket lines with it).
pub trait CatalogView {
    fn product(&self, id: u64) -> Option<Arc<Product>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Reserve,
    Commit,
    Unwind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: u64,
    pub name: String,
    pub price: i64,
    pub category: String,
}

/// Messages between shards (the checkout protocol). All are idempotent: re-sending is always safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    Reserve {
        payment_id: String,
        attempt: u32,
        user_shard: u32,
        lines: Vec<(u64, i64)>,
        deadline: Micros,
    },
    Commit {
        payment_id: String,
        attempt: u32,
        user_shard: u32,
    },
    /// Give back what this payment holds: held units are released, sold units restocked.
    Unwind {
        payment_id: String,
        attempt: u32,
        user_shard: u32,
    },
    Answer {
        payment_id: String,
        attempt: u32,
        from: u32,
        step: Step,
        result: Result<Vec<PricedLine>, EngineError>,
    },
}

// An input is moved once into `step`; boxing the request would only add an allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum Input {
    Client { token: u64, request: Request },
    Peer(PeerMsg),
    Tick,
}

/// What one step produced. Events are already applied to memory; `writes` are their store projection.
#[derive(Default)]
pub struct Effects {
    pub events: Vec<(u64, Event)>,
    pub writes: Writes,
    pub sends: Vec<(u32, PeerMsg)>,
    pub replies: Vec<(u64, Result<Reply, EngineError>)>,
    /// Calls to payment providers, made once the events before them are durable.
    pub calls: Vec<ProviderCall>,
    /// Notification delivery attempts, made once the events before them are durable.
    pub deliveries: Vec<crate::delivery::DeliveryCall>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.sends.is_empty() && self.replies.is_empty() && self.calls.is_empty() && self.deliveries.is_empty()
    }
}

pub struct Core {
    pub shard: u32,
    pub cfg: CoreConfig,
    next_lsn: u64,
    pub products: BTreeMap<u64, Arc<Product>>,
    max_product_id: u64,
    pub reservations: HashMap<String, Reservation>,
    held_deadlines: BTreeSet<(Micros, String)>,
    pub baskets: HashMap<String, Basket>,
    basket_expiry: BTreeSet<(Micros, String)>,
    pub payments: HashMap<String, Payment>,
    payment_expiry: BTreeSet<(Micros, String)>,
    pub notifications: HashMap<String, Notification>,
    scheduled: BTreeSet<(Micros, String)>,
    /// Notifications whose next delivery attempt is due, by when.
    delivery_due: DueSet,
    /// (user, id) of every unread notification, so that read-all touches only that user's.
    unread: BTreeSet<(String, String)>,
    /// (expires_at, id) of notifications that expire, so that cleanup touches only expired ones.
    notification_expiry: BTreeSet<(Micros, String)>,
    /// Read-all and cleanup work left over from commands that had more than one step's worth, finished
    /// on the following ticks: (user, marked at) and "expired before".
    read_all_backlog: std::collections::VecDeque<(String, Micros)>,
    cleanup_backlog: Option<Micros>,
    pub idempotency: HashMap<(String, String), IdempotencyRecord>,
    /// Stored payment methods, by user.
    pub wallets: HashMap<String, Wallet>,
    idempotency_expiry: BTreeSet<(Micros, String, String)>,
    /// Payments waiting on other shards or on their provider (re-driven on ticks and after recovery).
    in_flight: BTreeSet<String>,
    /// Idempotency keys of commands still in flight on a payment: (scope, key) → payment id.
    in_flight_keys: HashMap<(String, String), String>,
    /// Clients waiting for a payment's cross-shard step to finish.
    waiters: HashMap<String, Vec<u64>>,
    /// When each in-flight payment last sent its messages (memory only: re-driving is harmless).
    last_sent: HashMap<String, Micros>,
    /// The first refusal a product shard answered for an in-flight payment, returned to its waiters
    /// (memory only: after a crash the waiters are gone, and a re-driven step answers again).
    refusals: HashMap<String, EngineError>,
    rng: rand::rngs::SmallRng,
}

fn reservation_key(payment_id: &str, attempt: u32) -> String {
    format!("{payment_id}#{attempt}")
}

impl Core {
    pub fn new(shard: u32, cfg: CoreConfig, next_lsn: u64, seed: u64) -> Core {
        assert!(shard < cfg.shards, "shard index within the shard count");
        assert!(next_lsn >= 1, "LSNs start at 1");
        Core {
            shard,
            cfg,
            next_lsn,
            products: BTreeMap::new(),
            max_product_id: 0,
            reservations: HashMap::default(),
            held_deadlines: BTreeSet::new(),
            baskets: HashMap::default(),
            basket_expiry: BTreeSet::new(),
            payments: HashMap::default(),
            payment_expiry: BTreeSet::new(),
            notifications: HashMap::default(),
            scheduled: BTreeSet::new(),
            delivery_due: DueSet::default(),
            unread: BTreeSet::new(),
            notification_expiry: BTreeSet::new(),
            read_all_backlog: std::collections::VecDeque::new(),
            cleanup_backlog: None,
            idempotency: HashMap::default(),
            wallets: HashMap::default(),
            idempotency_expiry: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            in_flight_keys: HashMap::default(),
            waiters: HashMap::default(),
            last_sent: HashMap::default(),
            refusals: HashMap::default(),
            rng: rand::rngs::SmallRng::seed_from_u64(seed ^ u64::from(shard)),
        }
    }

    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Recovery continues the LSN sequence after the last durable record.
    pub fn set_next_lsn(&mut self, lsn: u64) {
        assert!(lsn >= self.next_lsn, "LSNs never go back");
        self.next_lsn = lsn;
    }

    pub fn max_product_id(&self) -> u64 {
        self.max_product_id
    }

    /// Stamps the event with the next LSN (which is also the entity's new version), applies it and queues it
    /// for the journal.
    fn emit(&mut self, mut event: Event, fx: &mut Effects) {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        match &mut event {
            Event::ProductPut { product, .. } => product.version = lsn,
            Event::ProductDeleted { version, .. } => *version = lsn,
            Event::ReservationPut { reservation } => reservation.version = lsn,
            Event::BasketPut { basket, .. } => basket.version = lsn,
            Event::BasketDeleted { version, .. } => *version = lsn,
            Event::PaymentPut { payment, .. } => payment.version = lsn,
            Event::NotificationPut { notification } => notification.version = lsn,
            Event::NotificationDeleted { version, .. } => *version = lsn,
            Event::IdempotencyPut { .. } | Event::IdempotencyDeleted { .. } => {}
            Event::WalletPut { wallet } => wallet.version = lsn,
        }
        self.apply(lsn, &event, &mut fx.writes);
        fx.events.push((lsn, event));
    }

    fn new_id(&mut self, now: Micros) -> String {
        let mut random = [0u8; 10];
        self.rng.fill_bytes(&mut random);
        let millis = u64::try_from(now / 1000).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
    }

    // ------------------------------------------------------------------------------------------------
    // Steps
    // ------------------------------------------------------------------------------------------------

    pub fn step(&mut self, input: Input, now: Micros, catalog: &dyn CatalogView, fx: &mut Effects) {
        match input {
            Input::Client { token, request } => self.client(token, request, now, catalog, fx),
            Input::Peer(msg) => self.peer(msg, now, fx),
            Input::Tick => self.tick(now, fx),
        }
    }

    /// Runs a command. `None` = the answer will come once other shards have answered.
    fn execute(
        &mut self,
        command: Command,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        catalog: &dyn CatalogView,
        fx: &mut Effects,
    ) -> Option<Result<Reply, EngineError>> {
        let r = match command {
            Command::CreateProduct(input) => self.create_product(None, input, now, fx),
            Command::CreateProductWithId { id, input } => self.create_product(Some(id), input, now, fx),
            Command::UpdateProduct { id, input } => self.update_product(id, input, now, fx),
            Command::DeleteProduct { id } => self.delete_product(id, fx),
            Command::CreateBasket { user_id } => self.create_basket(&user_id, now, fx),
            Command::DeleteBasket { user_id } => self.delete_basket(&user_id, BasketGone::Deleted, fx),
            Command::AddItem { user_id, product_id, quantity } => self.add_item(&user_id, product_id, quantity, now, catalog, fx),
            Command::UpdateItem { user_id, product_id, quantity } => self.update_item(&user_id, product_id, quantity, now, catalog, fx),
            Command::RemoveItem { user_id, product_id } => self.update_item(&user_id, product_id, 0, now, catalog, fx),
            Command::ClearBasket { user_id } => self.clear_basket(&user_id, now, fx),
            Command::CreatePayment(input) => return self.create_payment(input, token, idem, now, fx).transpose(),
            Command::ProcessPayment { payment_id, provider_id } => {
                return self.process_payment(&payment_id, provider_id, token, idem, now, fx).transpose();
            }
            Command::CancelPayment { payment_id } => {
                return self.cancel_payment(&payment_id, PaymentStatus::Cancelled, token, idem, now, fx).transpose();
            }
            Command::RefundPayment { payment_id, amount, reason } => {
                return self.refund_payment(&payment_id, amount, reason, token, idem, now, fx).transpose();
            }
            Command::RetryPayment { payment_id } => return self.retry_payment(&payment_id, token, idem, now, fx).transpose(),
            Command::UpdatePayment { payment_id, status, metadata } => {
                return self.update_payment(&payment_id, status, metadata, token, idem, now, fx).transpose();
            }
            Command::ChargeOutcome { payment_id, attempt, result } => self.charge_outcome(&payment_id, attempt, result, now, fx),
            Command::RefundOutcome { payment_id, refund_id, result } => self.refund_outcome(&payment_id, &refund_id, result, now, fx),
            Command::CreateNotification(input) => self.create_notification(input, None, now, fx),
            Command::ScheduleNotification { input, send_at } => {
                if send_at <= now {
                    Err(EngineError::invalid("validation failed: send_at must be in the future"))
                } else {
                    self.create_notification(input, Some(send_at), now, fx)
                }
            }
            Command::UpdateNotification { id, status, title, message } => self.update_notification(&id, status, title, message, now, fx),
            Command::DeleteNotification { id } => self.delete_notification(&id, fx),
            Command::SendNotification { id } => self.send_notification(&id, false, now, fx),
            Command::MarkNotificationRead { id } => self.mark_read(&id, now, fx),
            Command::MarkAllNotificationsRead { user_id } => self.mark_all_read(&user_id, now, fx),
            Command::RetryNotification { id } => self.send_notification(&id, true, now, fx),
            Command::DeliveryOutcome { id, delivery_id, attempt, result } => {
                self.delivery_outcome(&id, &delivery_id, attempt, result, now, fx)
            }
            Command::CleanupNotifications => Ok(Reply::Count(self.cleanup_notifications(now, fx))),
            Command::AddPaymentMethod(input) => self.add_payment_method(input, now, fx),
            Command::SetDefaultPaymentMethod { user_id, id } => self.set_default_payment_method(&user_id, &id, now, fx),
            Command::DeletePaymentMethod { user_id, id } => self.delete_payment_method(&user_id, &id, now, fx),
        };
        Some(r)
    }
}
