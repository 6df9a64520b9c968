//! The state machine of one shard, free of threads and I/O so that the threaded driver, recovery and the
//! deterministic simulation all run the very same code.
//!
//! `step` takes one input (a client request, a message from another shard, or a clock tick) and produces
//! effects: journal events (already applied to the in-memory state), messages for other shards, and replies
//! to clients. The driver releases messages and replies only after the events are durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::{RngCore, SeedableRng};

use crate::command::{
    Command, EngineError, ErrorKind, IdempotencyKey, NotificationInput, Outcome, PaymentInput, ProductInput, Reply, Request,
};
use crate::event::{BasketCause, BasketGone, Event, ProductCause};
use crate::model::*;
use crate::money::Currency;
use crate::views::{self, Ks, Writes};

/// Business limits; every one of them bounds something a client could otherwise grow without end.
pub mod limits {
    pub const QUANTITY_MAX: i64 = 10_000;
    pub const BASKET_LINES_MAX: usize = 200;
    pub const STOCK_MAX: i64 = 1_000_000_000;
    pub const TEXT_SHORT_MAX: usize = 256;
    pub const TEXT_LONG_MAX: usize = 4096;
    pub const MAP_ENTRIES_MAX: usize = 64;
    pub const USER_ID_MAX: usize = 128;
    /// Highest unit price in minor units (10^9 major units in a 2-digit currency). With QUANTITY_MAX and
    /// BASKET_LINES_MAX it keeps every line and total far inside i64: 10^11 · 10^4 · 200 = 2·10^17.
    pub const PRICE_MINOR_MAX: i64 = 100_000_000_000;
}

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
        }
    }
}

/// Stable hash for routing (FNV-1a 64): must never change, or data would move between shards.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn shard_of_user(user_id: &str, shards: u32) -> u32 {
    (fnv1a(user_id.as_bytes()) % u64::from(shards)) as u32
}

pub fn shard_of_product(id: u64, shards: u32) -> u32 {
    (id % u64::from(shards)) as u32
}

/// Read access to products owned by other shards (the user's shard prices basket lines with it).
pub trait CatalogView {
    fn product(&self, id: u64) -> Option<Product>;
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
        result: Result<Vec<PricedLine>, String>,
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
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.sends.is_empty() && self.replies.is_empty()
    }
}

pub struct Core {
    pub shard: u32,
    pub cfg: CoreConfig,
    next_lsn: u64,
    pub products: BTreeMap<u64, Product>,
    max_product_id: u64,
    pub reservations: HashMap<String, Reservation>,
    held_deadlines: BTreeSet<(Micros, String)>,
    pub baskets: HashMap<String, Basket>,
    basket_expiry: BTreeSet<(Micros, String)>,
    pub payments: HashMap<String, Payment>,
    payment_expiry: BTreeSet<(Micros, String)>,
    pub notifications: HashMap<String, Notification>,
    scheduled: BTreeSet<(Micros, String)>,
    pub idempotency: HashMap<(String, String), IdempotencyRecord>,
    idempotency_expiry: BTreeSet<(Micros, String, String)>,
    /// Payments waiting on other shards (re-driven on ticks and after recovery).
    in_flight: BTreeSet<String>,
    /// Idempotency keys of commands still in flight on a payment: (scope, key) → payment id.
    in_flight_keys: HashMap<(String, String), String>,
    /// Clients waiting for a payment's cross-shard step to finish.
    waiters: HashMap<String, Vec<u64>>,
    /// When each in-flight payment last sent its messages (memory only: re-driving is harmless).
    last_sent: HashMap<String, Micros>,
    rng: rand::rngs::SmallRng,
}

fn reservation_key(payment_id: &str, attempt: u32) -> String {
    format!("{payment_id}#{attempt}")
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), EngineError> {
    if required && value.trim().is_empty() {
        return Err(EngineError::invalid(format!("validation failed: {field} is required")));
    }
    if value.len() > max {
        return Err(EngineError::invalid(format!("validation failed: {field} is longer than {max} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(EngineError::invalid(format!("validation failed: {field} contains control characters")));
    }
    Ok(())
}

fn check_map(field: &str, map: &[(String, String)]) -> Result<(), EngineError> {
    if map.len() > limits::MAP_ENTRIES_MAX {
        return Err(EngineError::invalid(format!("validation failed: {field} has more than {} entries", limits::MAP_ENTRIES_MAX)));
    }
    for (k, v) in map {
        check_text(field, k, limits::TEXT_SHORT_MAX, true)?;
        check_text(field, v, limits::TEXT_LONG_MAX, false)?;
    }
    Ok(())
}

fn check_user(user_id: &str) -> Result<(), EngineError> {
    check_text("user_id", user_id, limits::USER_ID_MAX, true)
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
            reservations: HashMap::new(),
            held_deadlines: BTreeSet::new(),
            baskets: HashMap::new(),
            basket_expiry: BTreeSet::new(),
            payments: HashMap::new(),
            payment_expiry: BTreeSet::new(),
            notifications: HashMap::new(),
            scheduled: BTreeSet::new(),
            idempotency: HashMap::new(),
            idempotency_expiry: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            in_flight_keys: HashMap::new(),
            waiters: HashMap::new(),
            last_sent: HashMap::new(),
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

    // ------------------------------------------------------------------------------------------------
    // Applying events: the only place memory changes, shared by live commands and journal replay.
    // ------------------------------------------------------------------------------------------------

    /// Applies one event to memory and projects it into store writes. Idempotent for records it has
    /// already seen (a record never replaces a newer version).
    pub fn apply(&mut self, lsn: u64, event: &Event, writes: &mut Writes) {
        let batch = writes.batch(event.view(), lsn);
        match event {
            Event::ProductPut { product, .. } => {
                if let Some(old) = self.products.get(&product.id) {
                    if old.version >= product.version {
                        return;
                    }
                    batch.delete(Ks::ProductsByCategory, &views::category_key(&old.category, old.id));
                    batch.delete(Ks::ProductsByPrice, &views::price_key(old.price, old.id));
                }
                batch.put(Ks::Products, &views::product_key(product.id), &views::encode(product));
                batch.put(Ks::ProductsByCategory, &views::category_key(&product.category, product.id), &[]);
                batch.put(Ks::ProductsByPrice, &views::price_key(product.price, product.id), &[]);
                self.max_product_id = self.max_product_id.max(product.id);
                self.products.insert(product.id, product.clone());
            }
            Event::ProductDeleted { id, version } => {
                if let Some(old) = self.products.get(id) {
                    if old.version >= *version {
                        return;
                    }
                    batch.delete(Ks::ProductsByCategory, &views::category_key(&old.category, old.id));
                    batch.delete(Ks::ProductsByPrice, &views::price_key(old.price, old.id));
                    batch.delete(Ks::Products, &views::product_key(*id));
                    self.products.remove(id);
                }
            }
            Event::ReservationPut { reservation } => {
                let key = reservation_key(&reservation.payment_id, reservation.attempt);
                if let Some(old) = self.reservations.get(&key) {
                    if old.version >= reservation.version {
                        return;
                    }
                    self.held_deadlines.remove(&(old.deadline, key.clone()));
                }
                if reservation.state == ReservationState::Held {
                    self.held_deadlines.insert((reservation.deadline, key.clone()));
                }
                batch.put(Ks::Reservations, key.as_bytes(), &views::encode(reservation));
                self.reservations.insert(key, reservation.clone());
            }
            Event::BasketPut { basket, .. } => {
                if let Some(old) = self.baskets.get(&basket.user_id) {
                    if old.version >= basket.version {
                        return;
                    }
                    self.basket_expiry.remove(&(old.expires_at, old.user_id.clone()));
                }
                self.basket_expiry.insert((basket.expires_at, basket.user_id.clone()));
                batch.put(Ks::Baskets, basket.user_id.as_bytes(), &views::encode(basket));
                self.baskets.insert(basket.user_id.clone(), basket.clone());
            }
            Event::BasketDeleted { user_id, version, .. } => {
                if let Some(old) = self.baskets.get(user_id) {
                    if old.version >= *version {
                        return;
                    }
                    self.basket_expiry.remove(&(old.expires_at, user_id.clone()));
                    self.baskets.remove(user_id);
                    batch.delete(Ks::Baskets, user_id.as_bytes());
                }
            }
            Event::PaymentPut { payment } => {
                if let Some(old) = self.payments.get(&payment.id) {
                    if old.version >= payment.version {
                        return;
                    }
                    if let Some(at) = old.expires_at {
                        self.payment_expiry.remove(&(at, old.id.clone()));
                    }
                    if let Some(r) = &old.pending_idempotency {
                        self.in_flight_keys.remove(&(r.scope.clone(), r.key.clone()));
                    }
                }
                if let Some(r) = &payment.pending_idempotency {
                    self.in_flight_keys.insert((r.scope.clone(), r.key.clone()), payment.id.clone());
                }
                if payment.waiting_on.is_empty() {
                    self.in_flight.remove(&payment.id);
                } else {
                    self.in_flight.insert(payment.id.clone());
                }
                if payment.status == PaymentStatus::Pending
                    && payment.holding == Holding::Reserved
                    && let Some(at) = payment.expires_at
                {
                    self.payment_expiry.insert((at, payment.id.clone()));
                }
                batch.put(Ks::Payments, payment.id.as_bytes(), &views::encode(payment));
                batch.put(Ks::PaymentsByUser, &views::by_user_key(&payment.user_id, payment.created_at, &payment.id), &[]);
                self.payments.insert(payment.id.clone(), payment.clone());
            }
            Event::NotificationPut { notification } => {
                if let Some(old) = self.notifications.get(&notification.id) {
                    if old.version >= notification.version {
                        return;
                    }
                    if let Some(at) = old.send_at {
                        self.scheduled.remove(&(at, old.id.clone()));
                    }
                }
                if notification.status == "pending"
                    && let Some(at) = notification.send_at
                {
                    self.scheduled.insert((at, notification.id.clone()));
                }
                batch.put(Ks::Notifications, notification.id.as_bytes(), &views::encode(notification));
                batch.put(
                    Ks::NotificationsByUser,
                    &views::by_user_key(&notification.user_id, notification.created_at, &notification.id),
                    &[],
                );
                self.notifications.insert(notification.id.clone(), notification.clone());
            }
            Event::NotificationDeleted { id, version, .. } => {
                if let Some(old) = self.notifications.get(id) {
                    if old.version >= *version {
                        return;
                    }
                    if let Some(at) = old.send_at {
                        self.scheduled.remove(&(at, id.clone()));
                    }
                    batch.delete(Ks::NotificationsByUser, &views::by_user_key(&old.user_id, old.created_at, id));
                    batch.delete(Ks::Notifications, id.as_bytes());
                    self.notifications.remove(id);
                }
            }
            Event::IdempotencyPut { record } => {
                let key = (record.scope.clone(), record.key.clone());
                if let Some(old) = self.idempotency.get(&key) {
                    self.idempotency_expiry.remove(&(old.expires_at, key.0.clone(), key.1.clone()));
                }
                self.idempotency_expiry.insert((record.expires_at, key.0.clone(), key.1.clone()));
                batch.put(Ks::Idempotency, &views::idempotency_key(&record.scope, &record.key), &views::encode(record));
                self.idempotency.insert(key, record.clone());
            }
            Event::IdempotencyDeleted { scope, key } => {
                if let Some(old) = self.idempotency.remove(&(scope.clone(), key.clone())) {
                    self.idempotency_expiry.remove(&(old.expires_at, scope.clone(), key.clone()));
                    batch.delete(Ks::Idempotency, &views::idempotency_key(scope, key));
                }
            }
        }
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
            Event::PaymentPut { payment } => payment.version = lsn,
            Event::NotificationPut { notification } => notification.version = lsn,
            Event::NotificationDeleted { version, .. } => *version = lsn,
            Event::IdempotencyPut { .. } | Event::IdempotencyDeleted { .. } => {}
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

    fn client(&mut self, token: u64, request: Request, now: Micros, catalog: &dyn CatalogView, fx: &mut Effects) {
        let Request { command, idempotency } = request;
        if let Some(idem) = &idempotency {
            let key = (idem.scope.clone(), idem.key.clone());
            if let Some(record) = self.idempotency.get(&key).filter(|r| r.expires_at > now) {
                let outcome = if record.fingerprint == idem.fingerprint {
                    record.outcome.clone().into()
                } else {
                    Err(EngineError::conflict("idempotency key was already used for a different request"))
                };
                fx.replies.push((token, outcome));
                return;
            }
            // A retry while the first attempt is still waiting on other shards joins that attempt.
            let in_flight = self.in_flight_keys.get(&key).and_then(|id| self.payments.get(id));
            if let Some(p) = in_flight {
                let matches = p.pending_idempotency.as_ref().is_some_and(|r| r.fingerprint == idem.fingerprint);
                if matches {
                    let id = p.id.clone();
                    self.waiters.entry(id).or_default().push(token);
                } else {
                    fx.replies.push((token, Err(EngineError::conflict("idempotency key was already used for a different request"))));
                }
                return;
            }
        }
        let idem_ref = idempotency.as_ref().map(|i| IdemRef { scope: i.scope.clone(), key: i.key.clone(), fingerprint: i.fingerprint });
        let result = self.execute(command, token, idem_ref, now, catalog, fx);
        match result {
            // The command waits on other shards; the reply (and idempotency record) comes later.
            None => {}
            Some(outcome) => {
                if let Some(idem) = &idempotency {
                    self.record_idempotency(idem, &outcome, now, fx);
                }
                fx.replies.push((token, outcome));
            }
        }
    }

    fn record_idempotency(&mut self, idem: &IdempotencyKey, outcome: &Result<Reply, EngineError>, now: Micros, fx: &mut Effects) {
        // Internal failures are not final outcomes: a retry should run again.
        if matches!(outcome, Err(e) if e.kind == ErrorKind::Internal || e.kind == ErrorKind::Unavailable) {
            return;
        }
        let record = IdempotencyRecord {
            scope: idem.scope.clone(),
            key: idem.key.clone(),
            fingerprint: idem.fingerprint,
            outcome: Outcome::from(outcome.clone()),
            expires_at: now + self.cfg.idempotency_ttl,
        };
        self.emit(Event::IdempotencyPut { record }, fx);
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
            Command::CleanupNotifications => Ok(Reply::Count(self.cleanup_notifications(now, fx))),
        };
        Some(r)
    }

    // ---- products ----

    fn validate_product(input: &ProductInput, currency: Currency) -> Result<(), EngineError> {
        check_text("name", &input.name, limits::TEXT_SHORT_MAX, true)?;
        check_text("description", &input.description, limits::TEXT_LONG_MAX, false)?;
        check_text("category", &input.category, limits::TEXT_SHORT_MAX, false)?;
        check_text("image_url", &input.image_url, limits::TEXT_LONG_MAX, false)?;
        if input.price < 0 {
            return Err(EngineError::invalid("product price cannot be negative"));
        }
        if input.price > limits::PRICE_MINOR_MAX {
            return Err(EngineError::invalid(format!(
                "validation failed: price above {}",
                crate::money::format_minor(limits::PRICE_MINOR_MAX, currency)
            )));
        }
        if input.stock < 0 {
            return Err(EngineError::invalid("product stock cannot be negative"));
        }
        if input.stock > limits::STOCK_MAX {
            return Err(EngineError::invalid(format!("validation failed: stock above {}", limits::STOCK_MAX)));
        }
        Ok(())
    }

    /// Product ids owned by this shard are ≡ shard (mod shards), so the owner follows from the id.
    fn allocate_product_id(&self) -> u64 {
        let n = u64::from(self.cfg.shards);
        let s = u64::from(self.shard);
        let mut id = (self.max_product_id / n) * n + s;
        while id <= self.max_product_id || id == 0 {
            id += n;
        }
        id
    }

    fn create_product(&mut self, id: Option<u64>, input: ProductInput, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        Self::validate_product(&input, self.cfg.currency)?;
        let id = match id {
            Some(id) => {
                if id == 0 || shard_of_product(id, self.cfg.shards) != self.shard {
                    return Err(EngineError::invalid("validation failed: product id is not valid here"));
                }
                if self.products.contains_key(&id) {
                    return Err(EngineError::conflict(format!("conflict: product {id} already exists")));
                }
                id
            }
            None => self.allocate_product_id(),
        };
        let product = Product {
            id,
            name: input.name,
            description: input.description,
            price: input.price,
            category: input.category,
            image_url: input.image_url,
            available: input.stock,
            reserved: 0,
            sold: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        self.emit(Event::ProductPut { product, cause: ProductCause::Created }, fx);
        Ok(Reply::Product(self.products[&id].clone()))
    }

    fn update_product(&mut self, id: u64, input: ProductInput, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        Self::validate_product(&input, self.cfg.currency)?;
        let Some(old) = self.products.get(&id) else {
            return Err(EngineError::not_found("product not found"));
        };
        let product = Product {
            name: input.name,
            description: input.description,
            price: input.price,
            category: input.category,
            image_url: input.image_url,
            available: input.stock,
            updated_at: now,
            ..old.clone()
        };
        self.emit(Event::ProductPut { product, cause: ProductCause::Updated }, fx);
        Ok(Reply::Product(self.products[&id].clone()))
    }

    fn delete_product(&mut self, id: u64, fx: &mut Effects) -> Result<Reply, EngineError> {
        let Some(old) = self.products.get(&id) else {
            return Err(EngineError::not_found("product not found"));
        };
        if old.reserved > 0 {
            return Err(EngineError::conflict(format!("conflict: product {id} has {} units reserved by pending payments", old.reserved)));
        }
        self.emit(Event::ProductDeleted { id, version: 0 }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    // ---- baskets ----

    fn live_basket(&self, user_id: &str, now: Micros) -> Option<&Basket> {
        self.baskets.get(user_id).filter(|b| b.expires_at > now)
    }

    fn fresh_basket(&self, user_id: &str, now: Micros) -> Basket {
        Basket {
            id: format!("basket_{user_id}_{}", now / MICROS_PER_SECOND),
            user_id: user_id.to_string(),
            lines: Vec::new(),
            created_at: now,
            updated_at: now,
            expires_at: now + self.cfg.basket_ttl,
            version: 0,
        }
    }

    /// The user's live basket, or a new one (an expired basket is abandoned first).
    fn basket_for_write(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Basket {
        if let Some(b) = self.live_basket(user_id, now) {
            return b.clone();
        }
        if self.baskets.contains_key(user_id) {
            self.abandon_basket(user_id, now, fx);
        }
        self.fresh_basket(user_id, now)
    }

    fn create_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        if let Some(b) = self.live_basket(user_id, now) {
            return Ok(Reply::Basket(b.clone()));
        }
        let basket = self.basket_for_write(user_id, now, fx);
        self.emit(Event::BasketPut { basket, cause: BasketCause::Created }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    fn delete_basket(&mut self, user_id: &str, why: BasketGone, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let Some(old) = self.baskets.get(user_id) else {
            return Ok(Reply::Deleted { existed: false });
        };
        let basket_id = old.id.clone();
        self.emit(Event::BasketDeleted { user_id: user_id.to_string(), basket_id, version: 0, why }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    fn abandon_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) {
        let Some(old) = self.baskets.get(user_id).cloned() else { return };
        let _ = self.delete_basket(user_id, BasketGone::Abandoned, fx);
        if !old.lines.is_empty() {
            let data = vec![("basket_id".to_string(), old.id.clone()), ("reason".to_string(), "Basket expired".to_string())];
            self.notify(user_id, "Basket Abandoned", "Your basket expired before checkout", "info", "low", data, now, fx);
        }
    }

    fn check_quantity(quantity: i64, allow_zero: bool) -> Result<(), EngineError> {
        let min = if allow_zero { 0 } else { 1 };
        if quantity < min || quantity > limits::QUANTITY_MAX {
            return Err(EngineError::invalid(format!("validation failed: quantity must be between {min} and {}", limits::QUANTITY_MAX)));
        }
        Ok(())
    }

    fn add_item(
        &mut self,
        user_id: &str,
        product_id: u64,
        quantity: i64,
        now: Micros,
        catalog: &dyn CatalogView,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        Self::check_quantity(quantity, false)?;
        let Some(product) = catalog.product(product_id) else {
            return Err(EngineError::not_found(format!("product not found: {product_id}")));
        };
        let current =
            self.live_basket(user_id, now).and_then(|b| b.lines.iter().find(|l| l.product_id == product_id)).map_or(0, |l| l.quantity);
        let wanted = current + quantity;
        if wanted > limits::QUANTITY_MAX {
            return Err(EngineError::invalid(format!("validation failed: quantity must be between 1 and {}", limits::QUANTITY_MAX)));
        }
        // Better than the old system: the whole quantity in the basket is checked, not just this add.
        if product.available < wanted {
            return Err(EngineError::new(
                ErrorKind::InsufficientStock,
                format!(
                    "product is not available or insufficient stock: product {product_id}, requested {wanted}, available {}",
                    product.available
                ),
            ));
        }
        let mut basket = self.basket_for_write(user_id, now, fx);
        match basket.lines.iter_mut().find(|l| l.product_id == product_id) {
            Some(line) => line.quantity = wanted,
            None => {
                if basket.lines.len() >= limits::BASKET_LINES_MAX {
                    return Err(EngineError::invalid(format!(
                        "validation failed: a basket holds at most {} lines",
                        limits::BASKET_LINES_MAX
                    )));
                }
                basket.lines.push(BasketLine {
                    product_id,
                    name: product.name,
                    price: product.price,
                    category: product.category,
                    quantity,
                });
            }
        }
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket, cause: BasketCause::ItemAdded }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    /// Sets a line's quantity; 0 removes it.
    fn update_item(
        &mut self,
        user_id: &str,
        product_id: u64,
        quantity: i64,
        now: Micros,
        catalog: &dyn CatalogView,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        Self::check_quantity(quantity, true)?;
        let Some(mut basket) = self.live_basket(user_id, now).cloned() else {
            return Err(EngineError::not_found(format!("basket not found for user {user_id}")));
        };
        let Some(pos) = basket.lines.iter().position(|l| l.product_id == product_id) else {
            return Err(EngineError::not_found(format!("product {product_id} not found in basket of user {user_id}")));
        };
        let cause = if quantity == 0 {
            basket.lines.remove(pos);
            BasketCause::ItemRemoved
        } else {
            if quantity > basket.lines[pos].quantity {
                let available = catalog.product(product_id).map_or(0, |p| p.available);
                if available < quantity {
                    return Err(EngineError::new(
                        ErrorKind::InsufficientStock,
                        format!(
                            "product is not available or insufficient stock: product {product_id}, requested {quantity}, available {available}"
                        ),
                    ));
                }
            }
            basket.lines[pos].quantity = quantity;
            BasketCause::ItemUpdated
        };
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket, cause }, fx);
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    fn clear_basket(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let mut basket = self.basket_for_write(user_id, now, fx);
        let had_lines = !basket.lines.is_empty();
        basket.lines.clear();
        basket.updated_at = now;
        self.emit(Event::BasketPut { basket: basket.clone(), cause: BasketCause::Cleared }, fx);
        if had_lines {
            let data = vec![("basket_id".to_string(), basket.id.clone()), ("reason".to_string(), "Cleared by user".to_string())];
            self.notify(user_id, "Basket Cleared", "Your basket has been cleared", "info", "low", data, now, fx);
        }
        Ok(Reply::Basket(self.baskets[user_id].clone()))
    }

    // ---- payments: the checkout protocol ----

    fn payment_mut_checked(&self, payment_id: &str) -> Result<Payment, EngineError> {
        self.payments.get(payment_id).cloned().ok_or_else(|| EngineError::not_found(format!("payment not found: {payment_id}")))
    }

    fn payment_shards(&self, p: &Payment) -> Vec<u32> {
        let mut shards: Vec<u32> = p.items.iter().map(|i| shard_of_product(i.product_id, self.cfg.shards)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    fn lines_for_shard(&self, p: &Payment, shard: u32) -> Vec<(u64, i64)> {
        p.items.iter().filter(|i| shard_of_product(i.product_id, self.cfg.shards) == shard).map(|i| (i.product_id, i.quantity)).collect()
    }

    /// Sends the message of the payment's current holding step to every shard still to answer.
    fn send_step(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
        for &shard in &p.waiting_on {
            let msg = match p.holding {
                Holding::Reserving => PeerMsg::Reserve {
                    payment_id: p.id.clone(),
                    attempt: p.attempt,
                    user_shard: self.shard,
                    lines: self.lines_for_shard(p, shard),
                    deadline: p.expires_at.unwrap_or(now) + self.cfg.reservation_grace,
                },
                Holding::Committing => PeerMsg::Commit { payment_id: p.id.clone(), attempt: p.attempt, user_shard: self.shard },
                Holding::Releasing | Holding::Restocking => {
                    PeerMsg::Unwind { payment_id: p.id.clone(), attempt: p.attempt, user_shard: self.shard }
                }
                Holding::Reserved | Holding::Committed | Holding::Released | Holding::Restocked => continue,
            };
            fx.sends.push((shard, msg));
        }
        self.last_sent.insert(p.id.clone(), now);
    }

    fn put_payment(&mut self, payment: Payment, fx: &mut Effects) -> Payment {
        let id = payment.id.clone();
        self.emit(Event::PaymentPut { payment }, fx);
        self.payments[&id].clone()
    }

    fn create_payment(
        &mut self,
        input: PaymentInput,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        let checked = (|| {
            check_user(&input.user_id)?;
            check_text("basket_id", &input.basket_id, limits::TEXT_SHORT_MAX, false)?;
            check_text("method", &input.method, limits::TEXT_SHORT_MAX, true)?;
            check_text("provider", &input.provider, limits::TEXT_SHORT_MAX, true)?;
            check_text("description", &input.description, limits::TEXT_LONG_MAX, false)?;
            check_map("metadata", &input.metadata)?;
            const METHODS: [&str; 6] = ["credit_card", "debit_card", "paypal", "stripe", "bank_transfer", "crypto"];
            if !METHODS.contains(&input.method.as_str()) {
                return Err(EngineError::invalid(format!("validation failed: method must be one of {}", METHODS.join(", "))));
            }
            let currency =
                if input.currency.is_empty() { self.cfg.currency.code().to_string() } else { input.currency.to_ascii_uppercase() };
            if currency != self.cfg.currency.code() {
                return Err(EngineError::invalid(format!(
                    "validation failed: currency {currency} is not accepted; prices are in {}",
                    self.cfg.currency
                )));
            }
            let Some(basket) = self.live_basket(&input.user_id, now) else {
                return Err(EngineError::not_found(format!("basket not found for user {}", input.user_id)));
            };
            if basket.lines.is_empty() {
                return Err(EngineError::invalid("basket is empty or invalid"));
            }
            Ok((basket.clone(), currency))
        })();
        let (basket, currency) = checked?;
        let id = self.new_id(now);
        let items: Vec<PaymentItem> = basket
            .lines
            .iter()
            .map(|l| PaymentItem {
                id: format!("item_{id}_{}", l.product_id),
                product_id: l.product_id,
                name: l.name.clone(),
                quantity: l.quantity,
                price: l.price,
                category: l.category.clone(),
                created_at: now,
            })
            .collect();
        let mut payment = Payment {
            id: id.clone(),
            user_id: input.user_id,
            basket_id: basket.id.clone(),
            amount: items.iter().map(PaymentItem::subtotal).sum(),
            currency,
            status: PaymentStatus::Pending,
            method: input.method,
            provider: input.provider,
            provider_id: String::new(),
            description: input.description,
            metadata: input.metadata,
            items,
            holding: Holding::Reserving,
            waiting_on: Vec::new(),
            failure_reason: String::new(),
            refunded_amount: 0,
            refund_reason: String::new(),
            created_at: now,
            updated_at: now,
            processed_at: None,
            expires_at: Some(now + self.cfg.payment_ttl),
            attempt: 1,
            process_after_reserve: false,
            pending_idempotency: None,
            version: 0,
        };
        payment.waiting_on = self.payment_shards(&payment);
        Ok(self.start_step(payment, token, idem, now, fx))
    }

    fn process_payment(
        &mut self,
        payment_id: &str,
        provider_id: String,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        check_text("provider_id", &provider_id, limits::TEXT_SHORT_MAX, false)?;
        let mut p = self.payment_mut_checked(payment_id)?;
        match (p.status, p.holding) {
            (PaymentStatus::Pending, Holding::Reserving) => {
                Err(EngineError::conflict("payment cannot be processed yet: its stock is still being reserved"))
            }
            // Another process call is committing this payment: wait for its outcome instead of selling twice.
            (PaymentStatus::Processing, Holding::Committing) => {
                self.waiters.entry(p.id.clone()).or_default().push(token);
                Ok(None)
            }
            (PaymentStatus::Pending, Holding::Reserved) => {
                if p.expires_at.is_some_and(|at| now > at) {
                    self.expire_payment(payment_id, now, fx);
                    return Err(EngineError::new(ErrorKind::Expired, "payment has expired"));
                }
                p.status = PaymentStatus::Processing;
                p.holding = Holding::Committing;
                p.provider_id = provider_id;
                p.updated_at = now;
                p.waiting_on = self.payment_shards(&p);
                Ok(self.start_step(p, token, idem, now, fx))
            }
            (status, _) => Err(EngineError::conflict(format!("payment cannot be processed, current status: {}", status.as_str()))),
        }
    }

    fn retry_payment(
        &mut self,
        payment_id: &str,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        let mut p = self.payment_mut_checked(payment_id)?;
        if p.status == PaymentStatus::Failed && p.holding == Holding::Releasing {
            return Err(EngineError::conflict("payment cannot be retried yet: its stock is still being released"));
        }
        if p.status != PaymentStatus::Failed || !matches!(p.holding, Holding::Released) {
            return Err(EngineError::conflict(format!("payment cannot be retried, current status: {}", p.status.as_str())));
        }
        // A retry is a fresh checkout of the same items: reserve again (new attempt), then process.
        p.status = PaymentStatus::Pending;
        p.holding = Holding::Reserving;
        p.attempt += 1;
        p.process_after_reserve = true;
        p.failure_reason.clear();
        p.expires_at = Some(now + self.cfg.payment_ttl);
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        Ok(self.start_step(p, token, idem, now, fx))
    }

    /// Records the payment and sends its current step to the shards in `waiting_on`; the caller is answered
    /// once they all have (so a read after a cancel's or refund's answer sees the units back on sale), or at
    /// once when no shard is involved. The idempotency key rides on the payment until then.
    fn start_step(&mut self, mut p: Payment, token: u64, idem: Option<IdemRef>, now: Micros, fx: &mut Effects) -> Option<Reply> {
        let waits = !p.waiting_on.is_empty();
        if waits {
            p.pending_idempotency = idem;
        }
        let p = self.put_payment(p, fx);
        self.send_step(&p, now, fx);
        if waits {
            self.waiters.entry(p.id.clone()).or_default().push(token);
            None
        } else {
            Some(Reply::Payment(p))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel_payment(
        &mut self,
        payment_id: &str,
        to: PaymentStatus,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        let mut p = self.payment_mut_checked(payment_id)?;
        if !(p.status == PaymentStatus::Pending && p.holding == Holding::Reserved) {
            let verb = if to == PaymentStatus::Cancelled { "cancelled" } else { "failed" };
            return Err(EngineError::conflict(format!("payment cannot be {verb}, current status: {}", p.status.as_str())));
        }
        p.status = to;
        if to == PaymentStatus::Failed {
            p.failure_reason = "failed by administrator".to_string();
        }
        p.holding = Holding::Releasing;
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        if to == PaymentStatus::Failed {
            self.notify_payment_failed(&p, now, fx);
        }
        Ok(self.start_step(p, token, idem, now, fx))
    }

    #[allow(clippy::too_many_arguments)]
    fn refund_payment(
        &mut self,
        payment_id: &str,
        amount: Option<i64>,
        reason: String,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        check_text("reason", &reason, limits::TEXT_LONG_MAX, false)?;
        let mut p = self.payment_mut_checked(payment_id)?;
        if p.status != PaymentStatus::Completed {
            return Err(EngineError::conflict(format!("payment cannot be refunded, current status: {}", p.status.as_str())));
        }
        let amount = match amount {
            Some(a) if a > 0 => a,
            _ => p.amount,
        };
        if amount > p.amount {
            return Err(EngineError::invalid("validation failed: refund amount cannot exceed payment amount"));
        }
        p.status = PaymentStatus::Refunded;
        p.refunded_amount = amount;
        p.refund_reason = reason.clone();
        p.updated_at = now;
        // Only a full refund puts the goods back on sale: a partial refund says nothing about which units.
        if self.cfg.restock_on_refund && amount == p.amount {
            p.holding = Holding::Restocking;
            p.waiting_on = self.payment_shards(&p);
        }
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(amount, self.cfg.currency)),
            ("reason".to_string(), reason),
        ];
        self.notify(&p.user_id, "Payment Refunded", "Your payment has been refunded successfully", "payment", "normal", data, now, fx);
        Ok(self.start_step(p, token, idem, now, fx))
    }

    #[allow(clippy::too_many_arguments)]
    fn update_payment(
        &mut self,
        payment_id: &str,
        status: PaymentStatus,
        metadata: Option<Vec<(String, String)>>,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        if let Some(m) = &metadata {
            check_map("metadata", m)?;
        }
        // Status changes go through the same guarded flows as the dedicated endpoints, so stock stays right.
        let outcome = match status {
            PaymentStatus::Processing | PaymentStatus::Completed => {
                self.process_payment(payment_id, String::new(), token, idem, now, fx)?
            }
            PaymentStatus::Cancelled | PaymentStatus::Failed => self.cancel_payment(payment_id, status, token, idem, now, fx)?,
            PaymentStatus::Refunded => {
                self.refund_payment(payment_id, None, "updated by administrator".to_string(), token, idem, now, fx)?
            }
            PaymentStatus::Pending => return Err(EngineError::invalid("invalid payment status: pending")),
        };
        // Metadata changes only with an accepted transition: a refused command changes nothing.
        if let Some(m) = metadata {
            let mut updated = self.payment_mut_checked(payment_id)?;
            updated.metadata = m;
            updated.updated_at = now;
            let p = self.put_payment(updated, fx);
            if outcome.is_some() {
                return Ok(Some(Reply::Payment(p)));
            }
        }
        Ok(outcome)
    }

    fn expire_payment(&mut self, payment_id: &str, now: Micros, fx: &mut Effects) {
        let Some(mut p) = self.payments.get(payment_id).cloned() else { return };
        if !(p.status == PaymentStatus::Pending && p.holding == Holding::Reserved) {
            return;
        }
        p.status = PaymentStatus::Failed;
        p.failure_reason = "payment has expired".to_string();
        p.holding = Holding::Releasing;
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        let p = self.put_payment(p, fx);
        self.send_step(&p, now, fx);
        self.notify_payment_failed(&p, now, fx);
    }

    fn notify_payment_failed(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(p.amount, self.cfg.currency)),
            ("reason".to_string(), p.failure_reason.clone()),
            ("error_code".to_string(), "payment_failed".to_string()),
        ];
        self.notify(
            &p.user_id,
            "Payment Failed",
            "Your payment could not be processed. Please try again.",
            "payment",
            "high",
            data,
            now,
            fx,
        );
    }

    fn finish_waiters(&mut self, payment_id: &str, outcome: Result<Reply, EngineError>, now: Micros, fx: &mut Effects) {
        if let Some(idem) = self.payments.get(payment_id).and_then(|p| p.pending_idempotency.clone()) {
            let key = IdempotencyKey { scope: idem.scope, key: idem.key, fingerprint: idem.fingerprint };
            self.record_idempotency(&key, &outcome, now, fx);
        }
        for token in self.waiters.remove(payment_id).unwrap_or_default() {
            fx.replies.push((token, outcome.clone()));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        payment_id: String,
        attempt: u32,
        from: u32,
        step: Step,
        result: Result<Vec<PricedLine>, String>,
        now: Micros,
        fx: &mut Effects,
    ) {
        let Some(mut p) = self.payments.get(&payment_id).cloned() else { return };
        let expected = match p.holding {
            Holding::Reserving => Step::Reserve,
            Holding::Committing => Step::Commit,
            Holding::Releasing | Holding::Restocking => Step::Unwind,
            _ => return,
        };
        // Duplicates and answers to an earlier step or attempt are harmless: drop them.
        if attempt != p.attempt || step != expected || !p.waiting_on.contains(&from) {
            return;
        }
        p.waiting_on.retain(|s| *s != from);
        match (&result, step) {
            (Ok(priced), Step::Reserve) => {
                // Price the items from the product shard's data at the moment of the reservation.
                for line in priced {
                    if let Some(item) = p.items.iter_mut().find(|i| i.product_id == line.product_id) {
                        item.name.clone_from(&line.name);
                        item.price = line.price;
                        item.category.clone_from(&line.category);
                    }
                }
                p.amount = p.items.iter().map(PaymentItem::subtotal).sum();
            }
            (Err(reason), Step::Reserve | Step::Commit) if p.failure_reason.is_empty() => {
                p.failure_reason.clone_from(reason);
            }
            _ => {}
        }
        p.updated_at = now;
        if !p.waiting_on.is_empty() {
            self.put_payment(p, fx);
            return;
        }
        // Every shard has answered this step.
        match step {
            Step::Reserve if p.failure_reason.is_empty() => {
                p.amount = p.items.iter().map(PaymentItem::subtotal).sum();
                p.holding = Holding::Reserved;
                if p.process_after_reserve {
                    p.process_after_reserve = false;
                    p.status = PaymentStatus::Processing;
                    p.holding = Holding::Committing;
                    p.waiting_on = self.payment_shards(&p);
                    let p = self.put_payment(p, fx);
                    self.send_step(&p, now, fx);
                    return;
                }
                let p = self.put_payment(p, fx);
                self.finish_waiters(&payment_id, Ok(Reply::Payment(p.clone())), now, fx);
                self.clear_pending_idempotency(&payment_id, fx);
            }
            Step::Reserve | Step::Commit if !p.failure_reason.is_empty() => {
                // Some line could not be held or sold: give back everything this payment holds.
                p.status = PaymentStatus::Failed;
                p.process_after_reserve = false;
                p.holding = Holding::Releasing;
                p.waiting_on = self.payment_shards(&p);
                let reason = p.failure_reason.clone();
                let p = self.put_payment(p, fx);
                self.send_step(&p, now, fx);
                self.notify_payment_failed(&p, now, fx);
                let kind = if reason.contains("insufficient stock") { ErrorKind::InsufficientStock } else { ErrorKind::Conflict };
                self.finish_waiters(&payment_id, Err(EngineError::new(kind, reason)), now, fx);
                self.clear_pending_idempotency(&payment_id, fx);
            }
            Step::Commit => {
                p.status = PaymentStatus::Completed;
                p.holding = Holding::Committed;
                p.processed_at = Some(now);
                let p = self.put_payment(p, fx);
                self.complete_side_effects(&p, now, fx);
                self.finish_waiters(&payment_id, Ok(Reply::Payment(p.clone())), now, fx);
                self.clear_pending_idempotency(&payment_id, fx);
            }
            Step::Unwind => {
                p.holding = if p.holding == Holding::Restocking { Holding::Restocked } else { Holding::Released };
                let p = self.put_payment(p, fx);
                self.finish_waiters(&payment_id, Ok(Reply::Payment(p)), now, fx);
                self.clear_pending_idempotency(&payment_id, fx);
            }
            Step::Reserve => unreachable!("covered by the guarded arms above"),
        }
    }

    fn clear_pending_idempotency(&mut self, payment_id: &str, fx: &mut Effects) {
        if let Some(mut p) = self.payments.get(payment_id).cloned() {
            self.last_sent.remove(payment_id);
            if p.pending_idempotency.is_some() {
                p.pending_idempotency = None;
                self.put_payment(p, fx);
            }
        }
    }

    /// A completed payment empties the basket it came from and tells the user.
    fn complete_side_effects(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(p.amount, self.cfg.currency)),
            ("currency".to_string(), p.currency.clone()),
        ];
        self.notify(&p.user_id, "Payment Successful", "Your payment has been processed successfully", "payment", "high", data, now, fx);
        if let Some(mut basket) = self.live_basket(&p.user_id, now).cloned()
            && !basket.lines.is_empty()
        {
            {
                basket.lines.clear();
                basket.updated_at = now;
                let basket_id = basket.id.clone();
                self.emit(Event::BasketPut { basket, cause: BasketCause::Purchased }, fx);
                let data = vec![("basket_id".to_string(), basket_id), ("reason".to_string(), "Payment completed".to_string())];
                self.notify(&p.user_id, "Basket Cleared", "Your basket has been cleared", "info", "low", data, now, fx);
            }
        }
    }

    // ---- product shard side of the protocol ----

    fn peer(&mut self, msg: PeerMsg, now: Micros, fx: &mut Effects) {
        match msg {
            PeerMsg::Reserve { payment_id, attempt, user_shard, lines, deadline } => {
                self.reserve(payment_id, attempt, user_shard, lines, deadline, now, fx)
            }
            PeerMsg::Commit { payment_id, attempt, user_shard } => self.commit(payment_id, attempt, user_shard, now, fx),
            PeerMsg::Unwind { payment_id, attempt, user_shard } => self.unwind(payment_id, attempt, user_shard, now, fx),
            PeerMsg::Answer { payment_id, attempt, from, step, result } => self.answer(payment_id, attempt, from, step, result, now, fx),
        }
    }

    fn reply_to(
        &self,
        user_shard: u32,
        payment_id: String,
        attempt: u32,
        step: Step,
        result: Result<Vec<PricedLine>, String>,
        fx: &mut Effects,
    ) {
        fx.sends.push((user_shard, PeerMsg::Answer { payment_id, attempt, from: self.shard, step, result }));
    }

    fn priced(&self, lines: &[(u64, i64)]) -> Vec<PricedLine> {
        lines
            .iter()
            .filter_map(|(id, _)| self.products.get(id))
            .map(|p| PricedLine { product_id: p.id, name: p.name.clone(), price: p.price, category: p.category.clone() })
            .collect()
    }

    fn put_reservation(&mut self, reservation: Reservation, fx: &mut Effects) {
        self.emit(Event::ReservationPut { reservation }, fx);
    }

    #[allow(clippy::too_many_arguments)]
    fn adjust_stock(&mut self, id: u64, available: i64, reserved: i64, sold: i64, cause: ProductCause, now: Micros, fx: &mut Effects) {
        let Some(mut product) = self.products.get(&id).cloned() else { return };
        let before = product.available;
        product.available += available;
        product.reserved += reserved;
        product.sold += sold;
        product.updated_at = now;
        assert!(product.available >= 0 && product.reserved >= 0 && product.sold >= 0, "stock never negative: {product:?}");
        let after = product.available;
        self.emit(Event::ProductPut { product: product.clone(), cause }, fx);
        if cause == ProductCause::Sold {
            let threshold = self.cfg.low_stock_threshold;
            let (title, message) = if after == 0 && before > 0 {
                ("Stock Out", "Product is out of stock")
            } else if after <= threshold && before > threshold {
                ("Stock Low", "Product stock is running low")
            } else {
                return;
            };
            let data = vec![("product_id".to_string(), id.to_string()), ("available".to_string(), after.to_string())];
            self.notify("system", title, message, "system", "normal", data, now, fx);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &mut self,
        payment_id: String,
        attempt: u32,
        user_shard: u32,
        lines: Vec<(u64, i64)>,
        deadline: Micros,
        now: Micros,
        fx: &mut Effects,
    ) {
        let key = reservation_key(&payment_id, attempt);
        if let Some(existing) = self.reservations.get(&key) {
            // Seen before: answer the same way again.
            let result = match existing.state {
                ReservationState::Held | ReservationState::Committed => Ok(self.priced(&existing.lines)),
                ReservationState::Refused => Err("insufficient stock".to_string()),
                ReservationState::Released | ReservationState::Restocked => Err("reservation was released".to_string()),
            };
            self.reply_to(user_shard, payment_id, attempt, Step::Reserve, result, fx);
            return;
        }
        // All lines or none.
        let mut shortage = None;
        for (id, qty) in &lines {
            match self.products.get(id) {
                None => {
                    shortage = Some(format!("product not found: {id}"));
                    break;
                }
                Some(p) if p.available < *qty => {
                    shortage = Some(format!("insufficient stock for product {id}: requested {qty}, available {}", p.available));
                    break;
                }
                Some(_) => {}
            }
        }
        let state = if shortage.is_some() { ReservationState::Refused } else { ReservationState::Held };
        if state == ReservationState::Held {
            for (id, qty) in &lines {
                self.adjust_stock(*id, -qty, *qty, 0, ProductCause::Reserved, now, fx);
            }
        }
        let reservation = Reservation {
            payment_id: payment_id.clone(),
            attempt,
            user_shard,
            lines: lines.clone(),
            state,
            deadline,
            updated_at: now,
            version: 0,
        };
        self.put_reservation(reservation, fx);
        let result = match shortage {
            Some(reason) => Err(reason),
            None => Ok(self.priced(&lines)),
        };
        self.reply_to(user_shard, payment_id, attempt, Step::Reserve, result, fx);
    }

    fn commit(&mut self, payment_id: String, attempt: u32, user_shard: u32, now: Micros, fx: &mut Effects) {
        let key = reservation_key(&payment_id, attempt);
        let result = match self.reservations.get(&key).cloned() {
            Some(mut r) if r.state == ReservationState::Held => {
                for (id, qty) in &r.lines {
                    self.adjust_stock(*id, 0, -qty, *qty, ProductCause::Sold, now, fx);
                }
                r.state = ReservationState::Committed;
                r.updated_at = now;
                self.put_reservation(r, fx);
                Ok(Vec::new())
            }
            Some(r) if r.state == ReservationState::Committed => Ok(Vec::new()),
            _ => Err("reservation expired or was released".to_string()),
        };
        self.reply_to(user_shard, payment_id, attempt, Step::Commit, result, fx);
    }

    fn unwind(&mut self, payment_id: String, attempt: u32, user_shard: u32, now: Micros, fx: &mut Effects) {
        let key = reservation_key(&payment_id, attempt);
        match self.reservations.get(&key).cloned() {
            Some(mut r) if r.state == ReservationState::Held => {
                for (id, qty) in &r.lines {
                    self.adjust_stock(*id, *qty, -qty, 0, ProductCause::Released, now, fx);
                }
                r.state = ReservationState::Released;
                r.updated_at = now;
                self.put_reservation(r, fx);
            }
            Some(mut r) if r.state == ReservationState::Committed => {
                for (id, qty) in &r.lines {
                    self.adjust_stock(*id, *qty, 0, -qty, ProductCause::Restocked, now, fx);
                }
                r.state = ReservationState::Restocked;
                r.updated_at = now;
                self.put_reservation(r, fx);
            }
            Some(_) => {}
            None => {
                // The unwind overtook its reserve: leave a tombstone so a late reserve holds nothing.
                let reservation = Reservation {
                    payment_id: payment_id.clone(),
                    attempt,
                    user_shard,
                    lines: Vec::new(),
                    state: ReservationState::Released,
                    deadline: now,
                    updated_at: now,
                    version: 0,
                };
                self.put_reservation(reservation, fx);
            }
        }
        self.reply_to(user_shard, payment_id, attempt, Step::Unwind, Ok(Vec::new()), fx);
    }

    // ---- notifications ----

    fn validate_notification(input: &NotificationInput) -> Result<(), EngineError> {
        check_user(&input.user_id)?;
        check_text("title", &input.title, limits::TEXT_SHORT_MAX, true)?;
        check_text("message", &input.message, limits::TEXT_LONG_MAX, true)?;
        check_text("template_id", &input.template_id, limits::TEXT_SHORT_MAX, false)?;
        check_map("data", &input.data)?;
        if !notify::TYPES.contains(&input.kind.as_str()) {
            return Err(EngineError::invalid(format!("validation failed: type must be one of {}", notify::TYPES.join(", "))));
        }
        if !notify::CHANNELS.contains(&input.channel.as_str()) {
            return Err(EngineError::invalid(format!("validation failed: channel must be one of {}", notify::CHANNELS.join(", "))));
        }
        if !input.priority.is_empty() && !notify::PRIORITIES.contains(&input.priority.as_str()) {
            return Err(EngineError::invalid(format!("validation failed: priority must be one of {}", notify::PRIORITIES.join(", "))));
        }
        Ok(())
    }

    fn create_notification(
        &mut self,
        input: NotificationInput,
        send_at: Option<Micros>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        Self::validate_notification(&input)?;
        let priority = if input.priority.is_empty() { notify::default_priority(&input.kind).to_string() } else { input.priority };
        // Urgent kinds go out at once (the old system's rule); everything else waits for an explicit send.
        let immediate = send_at.is_none()
            && (priority == "high" || priority == "urgent" || matches!(input.kind.as_str(), "system" | "payment" | "order"));
        let id = self.new_id(now);
        let notification = Notification {
            id: id.clone(),
            user_id: input.user_id,
            title: input.title,
            message: input.message,
            kind: input.kind,
            status: if immediate { "sent".to_string() } else { "pending".to_string() },
            priority,
            channel: input.channel,
            template_id: input.template_id,
            data: input.data,
            created_at: now,
            updated_at: now,
            sent_at: immediate.then_some(now),
            read_at: None,
            expires_at: input.expires_at,
            send_at,
            attempts: u32::from(immediate),
            version: 0,
        };
        self.emit(Event::NotificationPut { notification }, fx);
        Ok(Reply::Notification(self.notifications[&id].clone()))
    }

    /// A notification caused by an event (payment, stock, basket), delivered in-app at once.
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        user_id: &str,
        title: &str,
        message: &str,
        kind: &str,
        priority: &str,
        data: Vec<(String, String)>,
        now: Micros,
        fx: &mut Effects,
    ) {
        let id = self.new_id(now);
        let notification = Notification {
            id,
            user_id: user_id.to_string(),
            title: title.to_string(),
            message: message.to_string(),
            kind: kind.to_string(),
            status: "sent".to_string(),
            priority: priority.to_string(),
            channel: "in_app".to_string(),
            template_id: String::new(),
            data,
            created_at: now,
            updated_at: now,
            sent_at: Some(now),
            read_at: None,
            expires_at: None,
            send_at: None,
            attempts: 1,
            version: 0,
        };
        self.emit(Event::NotificationPut { notification }, fx);
    }

    fn notification(&self, id: &str) -> Result<Notification, EngineError> {
        self.notifications.get(id).cloned().ok_or_else(|| EngineError::not_found(format!("notification not found: {id}")))
    }

    fn put_notification(&mut self, n: Notification, fx: &mut Effects) -> Result<Reply, EngineError> {
        let id = n.id.clone();
        self.emit(Event::NotificationPut { notification: n }, fx);
        Ok(Reply::Notification(self.notifications[&id].clone()))
    }

    fn update_notification(
        &mut self,
        id: &str,
        status: String,
        title: String,
        message: String,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        if !status.is_empty() {
            if !notify::STATUSES.contains(&status.as_str()) {
                return Err(EngineError::invalid(format!("validation failed: status must be one of {}", notify::STATUSES.join(", "))));
            }
            n.status = status;
        }
        if !title.is_empty() {
            check_text("title", &title, limits::TEXT_SHORT_MAX, true)?;
            n.title = title;
        }
        if !message.is_empty() {
            check_text("message", &message, limits::TEXT_LONG_MAX, true)?;
            n.message = message;
        }
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    fn delete_notification(&mut self, id: &str, fx: &mut Effects) -> Result<Reply, EngineError> {
        let Some(old) = self.notifications.get(id) else {
            return Ok(Reply::Deleted { existed: false });
        };
        let user_id = old.user_id.clone();
        self.emit(Event::NotificationDeleted { id: id.to_string(), user_id, version: 0 }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    fn send_notification(&mut self, id: &str, retry: bool, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        if retry && n.status != "failed" {
            return Err(EngineError::conflict("Notification is not in failed status"));
        }
        if n.expires_at.is_some_and(|at| at <= now) {
            return Err(EngineError::new(ErrorKind::Expired, format!("notification {id} has expired")));
        }
        n.status = "sent".to_string();
        n.sent_at = Some(now);
        n.send_at = None;
        n.attempts += 1;
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    fn mark_read(&mut self, id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        n.status = "read".to_string();
        n.read_at = Some(now);
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    fn mark_all_read(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let mut unread: Vec<Notification> =
            self.notifications.values().filter(|n| n.user_id == user_id && n.read_at.is_none()).cloned().collect();
        unread.sort_by(|a, b| a.id.cmp(&b.id));
        let count = unread.len() as u64;
        for mut n in unread {
            n.status = "read".to_string();
            n.read_at = Some(now);
            n.updated_at = now;
            self.emit(Event::NotificationPut { notification: n }, fx);
        }
        Ok(Reply::Count(count))
    }

    fn cleanup_notifications(&mut self, now: Micros, fx: &mut Effects) -> u64 {
        let mut expired: Vec<(String, String)> = self
            .notifications
            .values()
            .filter(|n| n.expires_at.is_some_and(|at| at <= now))
            .map(|n| (n.id.clone(), n.user_id.clone()))
            .collect();
        expired.sort();
        let count = expired.len() as u64;
        for (id, user_id) in expired {
            self.emit(Event::NotificationDeleted { id, user_id, version: 0 }, fx);
        }
        count
    }

    // ---- time ----

    /// Clock-driven work: expiries, scheduled sends, re-driving unanswered cross-shard steps. Each kind of
    /// work is bounded per tick so one tick never stalls the shard.
    pub fn tick(&mut self, now: Micros, fx: &mut Effects) {
        const PER_TICK_MAX: usize = 1024;
        let due: Vec<String> =
            self.payment_expiry.iter().take_while(|(at, _)| *at < now).take(PER_TICK_MAX).map(|(_, id)| id.clone()).collect();
        for id in due {
            self.expire_payment(&id, now, fx);
        }
        let due: Vec<String> =
            self.held_deadlines.iter().take_while(|(at, _)| *at < now).take(PER_TICK_MAX).map(|(_, k)| k.clone()).collect();
        for key in due {
            if let Some(mut r) = self.reservations.get(&key).cloned() {
                for (id, qty) in &r.lines {
                    self.adjust_stock(*id, *qty, -qty, 0, ProductCause::Released, now, fx);
                }
                r.state = ReservationState::Released;
                r.updated_at = now;
                self.put_reservation(r, fx);
            }
        }
        let due: Vec<String> =
            self.basket_expiry.iter().take_while(|(at, _)| *at <= now).take(PER_TICK_MAX).map(|(_, u)| u.clone()).collect();
        for user in due {
            self.abandon_basket(&user, now, fx);
        }
        let due: Vec<String> =
            self.scheduled.iter().take_while(|(at, _)| *at <= now).take(PER_TICK_MAX).map(|(_, id)| id.clone()).collect();
        for id in due {
            if let Some(mut n) = self.notifications.get(&id).cloned() {
                n.status = "sent".to_string();
                n.sent_at = Some(now);
                n.send_at = None;
                n.attempts += 1;
                n.updated_at = now;
                self.emit(Event::NotificationPut { notification: n }, fx);
            }
        }
        let due: Vec<(String, String)> = self
            .idempotency_expiry
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(PER_TICK_MAX)
            .map(|(_, s, k)| (s.clone(), k.clone()))
            .collect();
        for (scope, key) in due {
            self.emit(Event::IdempotencyDeleted { scope, key }, fx);
        }
        self.redrive(now, false, fx);
    }

    /// Re-sends the current step of every payment still waiting on other shards. After recovery
    /// (`all` = true) that is every such payment; on a tick only those unanswered for a while.
    pub fn redrive(&mut self, now: Micros, all: bool, fx: &mut Effects) {
        let stuck: Vec<Payment> = self
            .in_flight
            .iter()
            .filter(|id| all || self.last_sent.get(*id).is_none_or(|at| now - at >= self.cfg.redrive_after))
            .take(if all { usize::MAX } else { 1024 })
            .filter_map(|id| self.payments.get(id).cloned())
            .collect();
        for p in stuck {
            self.send_step(&p, now, fx);
        }
    }

    /// Loads one record from a store during recovery (no events, no LSNs).
    pub fn load(&mut self, event: &Event) {
        let mut scratch = Writes::default();
        self.apply(0, event, &mut scratch);
    }

    /// Checks the invariants that must hold between any two steps. Cheap enough for tests and simulation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: HashMap<u64, i64> = HashMap::new();
        for r in self.reservations.values() {
            if r.state == ReservationState::Held {
                for (id, qty) in &r.lines {
                    *held.entry(*id).or_default() += qty;
                }
            }
        }
        for p in self.products.values() {
            if p.available < 0 || p.reserved < 0 || p.sold < 0 {
                return Err(format!("negative stock: {p:?}"));
            }
            let expect = held.get(&p.id).copied().unwrap_or(0);
            if p.reserved != expect {
                return Err(format!("product {} reserved {} but held reservations add up to {expect}", p.id, p.reserved));
            }
        }
        for b in self.baskets.values() {
            if b.lines.iter().any(|l| l.quantity < 1) {
                return Err(format!("basket line with quantity < 1: {b:?}"));
            }
        }
        for p in self.payments.values() {
            if p.amount != p.items.iter().map(PaymentItem::subtotal).sum::<i64>() {
                return Err(format!("payment {} amount differs from its items", p.id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PaymentInput;

    struct Catalog(Vec<Product>);
    impl CatalogView for Catalog {
        fn product(&self, id: u64) -> Option<Product> {
            self.0.iter().find(|p| p.id == id).cloned()
        }
    }

    const T0: Micros = 1_700_000_000_000_000;

    fn input(name: &str, stock: i64) -> ProductInput {
        ProductInput { name: name.into(), description: String::new(), price: 500, stock, category: "c".into(), image_url: String::new() }
    }

    /// A one-shard core with one product, driven synchronously: peer messages are delivered at once.
    fn run(core: &mut Core, request: Request, now: Micros) -> Result<Reply, EngineError> {
        let catalog = Catalog(core.products.values().cloned().collect());
        let mut fx = Effects::default();
        core.step(Input::Client { token: 1, request }, now, &catalog, &mut fx);
        let mut replies = std::mem::take(&mut fx.replies);
        while let Some((_, msg)) = fx.sends.pop() {
            let mut next = Effects::default();
            core.step(Input::Peer(msg), now, &catalog, &mut next);
            fx.sends.extend(next.sends);
            replies.extend(next.replies);
        }
        core.check_invariants().unwrap();
        replies.pop().map(|(_, r)| r).expect("a reply")
    }

    fn with_product(stock: i64) -> Core {
        let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
        run(&mut core, Command::CreateProductWithId { id: 1, input: input("p", stock) }.into(), T0).unwrap();
        core
    }

    fn pay(user: &str) -> Command {
        Command::CreatePayment(PaymentInput::new(user, "paypal", "paypal"))
    }

    #[test]
    fn idempotent_retry_returns_the_first_outcome() {
        let mut core = with_product(10);
        let key = |fp| Some(IdempotencyKey { scope: "ana".into(), key: "k1".into(), fingerprint: fp });
        let add = |fp| Request { command: Command::AddItem { user_id: "ana".into(), product_id: 1, quantity: 2 }, idempotency: key(fp) };
        let first = run(&mut core, add(7), T0).unwrap();
        let again = run(&mut core, add(7), T0 + 1).unwrap();
        assert_eq!(first, again, "same outcome");
        assert_eq!(core.baskets["ana"].lines[0].quantity, 2, "applied once");
        let other = run(&mut core, add(8), T0 + 2).unwrap_err();
        assert_eq!(other.kind, ErrorKind::Conflict, "a different request may not reuse the key");
        // After 24 h the key is forgotten.
        let mut fx = Effects::default();
        core.tick(T0 + 25 * MICROS_PER_HOUR, &mut fx);
        assert!(core.idempotency.is_empty());
    }

    #[test]
    fn idempotent_checkout_reserves_once() {
        let mut core = with_product(10);
        run(&mut core, Command::AddItem { user_id: "bo".into(), product_id: 1, quantity: 3 }.into(), T0).unwrap();
        let req = || Request {
            command: pay("bo"),
            idempotency: Some(IdempotencyKey { scope: "bo".into(), key: "pay-1".into(), fingerprint: 1 }),
        };
        let Reply::Payment(a) = run(&mut core, req(), T0).unwrap() else { panic!() };
        let Reply::Payment(b) = run(&mut core, req(), T0 + 5).unwrap() else { panic!() };
        assert_eq!(a.id, b.id);
        assert_eq!(core.payments.len(), 1);
        assert_eq!(core.products[&1].reserved, 3);
    }

    #[test]
    fn pending_payment_expires_and_releases_its_stock() {
        let mut core = with_product(5);
        run(&mut core, Command::AddItem { user_id: "cy".into(), product_id: 1, quantity: 5 }.into(), T0).unwrap();
        let Reply::Payment(p) = run(&mut core, pay("cy").into(), T0).unwrap() else { panic!() };
        assert_eq!(core.products[&1].available, 0);
        let later = T0 + 31 * MICROS_PER_MINUTE;
        let err =
            run(&mut core, Command::ProcessPayment { payment_id: p.id.clone(), provider_id: String::new() }.into(), later).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Expired);
        assert_eq!(core.payments[&p.id].status, PaymentStatus::Failed);
        assert_eq!((core.products[&1].available, core.products[&1].reserved), (5, 0), "released");
        assert!(core.notifications.values().any(|n| n.title == "Payment Failed" && n.user_id == "cy"));
    }

    #[test]
    fn product_shard_releases_expired_reservations_by_itself() {
        let mut core = with_product(4);
        run(&mut core, Command::AddItem { user_id: "di".into(), product_id: 1, quantity: 4 }.into(), T0).unwrap();
        run(&mut core, pay("di").into(), T0).unwrap();
        // The user's shard never expires it (say it is down); the product shard's own deadline does.
        core.payment_expiry.clear();
        let mut fx = Effects::default();
        core.tick(T0 + 36 * MICROS_PER_MINUTE, &mut fx);
        assert_eq!((core.products[&1].available, core.products[&1].reserved), (4, 0));
    }

    #[test]
    fn baskets_are_abandoned_after_a_day() {
        let mut core = with_product(5);
        run(&mut core, Command::AddItem { user_id: "ed".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
        let mut fx = Effects::default();
        core.tick(T0 + 23 * MICROS_PER_HOUR, &mut fx);
        assert!(core.baskets.contains_key("ed"));
        core.tick(T0 + 24 * MICROS_PER_HOUR, &mut fx);
        assert!(!core.baskets.contains_key("ed"));
        assert!(fx.events.iter().any(|(_, e)| matches!(e, Event::BasketDeleted { why: BasketGone::Abandoned, .. })));
        assert!(core.notifications.values().any(|n| n.user_id == "ed" && n.title == "Basket Abandoned"));
    }

    #[test]
    fn scheduled_notifications_go_out_when_due() {
        let mut core = Core::new(0, CoreConfig::new(1), 1, 1);
        let n = NotificationInput {
            user_id: "fa".into(),
            title: "Hello".into(),
            message: "Later".into(),
            kind: "info".into(),
            channel: "email".into(),
            priority: String::new(),
            template_id: String::new(),
            data: vec![],
            expires_at: None,
        };
        let Reply::Notification(created) =
            run(&mut core, Command::ScheduleNotification { input: n, send_at: T0 + MICROS_PER_MINUTE }.into(), T0).unwrap()
        else {
            panic!()
        };
        assert_eq!(created.status, "pending");
        assert_eq!(created.priority, "normal", "default priority by type");
        let mut fx = Effects::default();
        core.tick(T0 + MICROS_PER_MINUTE, &mut fx);
        assert_eq!(core.notifications[&created.id].status, "sent");
        assert_eq!(core.notifications[&created.id].sent_at, Some(T0 + MICROS_PER_MINUTE));
    }

    #[test]
    fn product_ids_are_owned_by_their_shard() {
        let mut core = Core::new(1, CoreConfig::new(3), 1, 1);
        let mut ids = Vec::new();
        for i in 0..4 {
            let Reply::Product(p) = run(&mut core, Command::CreateProduct(input(&format!("p{i}"), 1)).into(), T0).unwrap() else {
                panic!()
            };
            ids.push(p.id);
        }
        assert_eq!(ids, vec![1, 4, 7, 10]);
        assert!(ids.iter().all(|id| shard_of_product(*id, 3) == 1));
    }

    #[test]
    fn a_refused_status_change_keeps_the_metadata() {
        let mut core = with_product(5);
        run(&mut core, Command::AddItem { user_id: "ho".into(), product_id: 1, quantity: 1 }.into(), T0).unwrap();
        let Reply::Payment(p) = run(&mut core, pay("ho").into(), T0).unwrap() else { panic!() };
        let update = |status| Command::UpdatePayment { payment_id: p.id.clone(), status, metadata: Some(vec![("k".into(), "v".into())]) };
        let err = run(&mut core, update(PaymentStatus::Refunded).into(), T0).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "a pending payment cannot be refunded");
        assert!(core.payments[&p.id].metadata.is_empty(), "nothing changed");
        let Reply::Payment(done) = run(&mut core, update(PaymentStatus::Completed).into(), T0).unwrap() else { panic!() };
        assert_eq!((done.status, done.metadata.clone()), (PaymentStatus::Completed, vec![("k".to_string(), "v".to_string())]));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let mut core = with_product(5);
        let before = core.next_lsn();
        for cmd in [
            Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 0 },
            Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: -3 },
            Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 1_000_000 },
            Command::AddItem { user_id: String::new(), product_id: 1, quantity: 1 },
            Command::AddItem { user_id: "gi".into(), product_id: 99, quantity: 1 },
            Command::AddItem { user_id: "gi".into(), product_id: 1, quantity: 6 },
            Command::UpdateProduct { id: 1, input: ProductInput { price: -1, ..input("p", 1) } },
            Command::UpdateProduct { id: 1, input: ProductInput { stock: -1, ..input("p", 1) } },
            Command::CreateProduct(ProductInput { name: " ".into(), ..input("p", 1) }),
            Command::RefundPayment { payment_id: "nope".into(), amount: None, reason: String::new() },
        ] {
            assert!(run(&mut core, cmd.clone().into(), T0).is_err(), "{cmd:?} must be refused");
        }
        assert_eq!(core.next_lsn(), before, "no event was written");
    }
}
