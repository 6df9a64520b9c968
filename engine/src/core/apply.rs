//! Applying events: the only place memory changes, shared by live commands and journal replay. Every
//! apply also projects the event into store writes and keeps the in-memory indexes (expiries, in-flight
//! payments) in step.

use super::*;
use crate::product_view::ProductChange;
use crate::store::WriteBatch;

impl Core {
    /// Applies one event to memory and projects it into store writes. Idempotent for records it has
    /// already seen (a record never replaces a newer version).
    pub fn apply(&mut self, lsn: u64, event: &Event, writes: &mut Writes) {
        let (batch, products) = writes.batch_and_products(event.view(), lsn);
        match event {
            Event::ProductPut { product, .. } => self.apply_product(product, batch, products),
            Event::ProductDeleted { id, version } => self.apply_product_deleted(id, version, batch, products),
            Event::ReservationPut { reservation } => self.apply_reservation(reservation, batch),
            Event::BasketPut { basket, .. } => self.apply_basket(basket, batch),
            Event::BasketDeleted { user_id, version, .. } => self.apply_basket_deleted(user_id, version, batch),
            Event::PaymentPut { payment, .. } => self.apply_payment(payment, batch),
            Event::NotificationPut { notification } => self.apply_notification(notification, batch),
            Event::NotificationDeleted { id, version, .. } => self.apply_notification_deleted(id, version, batch),
            Event::IdempotencyPut { record } => self.apply_idempotency(record, batch),
            Event::IdempotencyDeleted { scope, key } => self.apply_idempotency_deleted(scope, key, batch),
            Event::WalletPut { wallet } => self.apply_wallet(wallet, batch),
        }
    }

    fn apply_product(&mut self, product: &Product, batch: &mut WriteBatch, changes: &mut Vec<ProductChange>) {
        if self.products.get(&product.id).is_some_and(|old| old.version >= product.version) {
            return;
        }
        let shared = Arc::new(product.clone());
        changes.push((product.id, Some(Arc::clone(&shared))));
        if let Some(old) = self.keep_product(shared) {
            batch.delete(Ks::ProductsByCategory, &views::category_key(&old.category, old.id));
            batch.delete(Ks::ProductsByPrice, &views::price_key(old.price, old.id));
        }
        batch.put(Ks::Products, &views::product_key(product.id), &views::encode(product));
        batch.put(Ks::ProductsByCategory, &views::category_key(&product.category, product.id), &[]);
        batch.put(Ks::ProductsByPrice, &views::price_key(product.price, product.id), &[]);
    }

    fn keep_product(&mut self, product: Arc<Product>) -> Option<Arc<Product>> {
        self.max_product_id = self.max_product_id.max(product.id);
        self.products.insert(product.id, product)
    }

    fn apply_product_deleted(&mut self, id: &u64, version: &u64, batch: &mut WriteBatch, changes: &mut Vec<ProductChange>) {
        if let Some(old) = self.products.get(id) {
            if old.version >= *version {
                return;
            }
            batch.delete(Ks::ProductsByCategory, &views::category_key(&old.category, old.id));
            batch.delete(Ks::ProductsByPrice, &views::price_key(old.price, old.id));
            batch.delete(Ks::Products, &views::product_key(*id));
            changes.push((*id, None));
            self.products.remove(id);
        }
    }

    fn apply_reservation(&mut self, reservation: &Reservation, batch: &mut WriteBatch) {
        let key = reservation_key(&reservation.payment_id, reservation.attempt);
        if self.reservations.get(&key).is_some_and(|old| old.version >= reservation.version) {
            return;
        }
        batch.put(Ks::Reservations, key.as_bytes(), &views::encode(reservation));
        self.keep_reservation(key, reservation.clone());
    }

    fn keep_reservation(&mut self, key: String, reservation: Reservation) {
        if let Some(old) = self.reservations.get(&key) {
            self.held_deadlines.remove(&(old.deadline, key.clone()));
        }
        if reservation.state == ReservationState::Held {
            self.held_deadlines.insert((reservation.deadline, key.clone()));
        }
        self.reservations.insert(key, reservation);
    }

    fn apply_basket(&mut self, basket: &Basket, batch: &mut WriteBatch) {
        if self.baskets.get(&basket.user_id).is_some_and(|old| old.version >= basket.version) {
            return;
        }
        batch.put(Ks::Baskets, basket.user_id.as_bytes(), &views::encode(basket));
        self.keep_basket(basket.clone());
    }

    fn apply_wallet(&mut self, wallet: &Wallet, batch: &mut WriteBatch) {
        if self.wallets.get(&wallet.user_id).is_some_and(|old| old.version >= wallet.version) {
            return;
        }
        if wallet.methods.is_empty() {
            batch.delete(Ks::Wallets, wallet.user_id.as_bytes());
            self.wallets.remove(&wallet.user_id);
        } else {
            batch.put(Ks::Wallets, wallet.user_id.as_bytes(), &views::encode(wallet));
            self.wallets.insert(wallet.user_id.clone(), wallet.clone());
        }
    }

    fn keep_basket(&mut self, basket: Basket) {
        // A basket's expiry is set when it is made, so a write to it usually leaves its index entry
        // and its key as they are: neither is copied then.
        if let Some(old) = self.baskets.get_mut(&basket.user_id) {
            if old.expires_at != basket.expires_at {
                self.basket_expiry.remove(&(old.expires_at, old.user_id.clone()));
                self.basket_expiry.insert((basket.expires_at, basket.user_id.clone()));
            }
            *old = basket;
            return;
        }
        self.basket_expiry.insert((basket.expires_at, basket.user_id.clone()));
        self.baskets.insert(basket.user_id.clone(), basket);
    }

    fn apply_basket_deleted(&mut self, user_id: &str, version: &u64, batch: &mut WriteBatch) {
        if let Some(old) = self.baskets.get(user_id) {
            if old.version >= *version {
                return;
            }
            self.basket_expiry.remove(&(old.expires_at, user_id.to_string()));
            self.baskets.remove(user_id);
            batch.delete(Ks::Baskets, user_id.as_bytes());
        }
    }

    fn apply_payment(&mut self, payment: &Payment, batch: &mut WriteBatch) {
        if self.payments.get(&payment.id).is_some_and(|old| old.version >= payment.version) {
            return;
        }
        batch.put(Ks::Payments, payment.id.as_bytes(), &views::encode(payment));
        batch.put(Ks::PaymentsByUser, &views::by_user_key(&payment.user_id, payment.created_at, &payment.id), &[]);
        self.keep_payment(payment.clone());
    }

    fn keep_payment(&mut self, payment: Payment) {
        if let Some(old) = self.payments.get(&payment.id) {
            if let Some(at) = old.expires_at {
                self.payment_expiry.remove(&(at, old.id.clone()));
            }
            if let Some(r) = &old.pending_idempotency {
                self.in_flight_keys.remove(&(r.scope.clone(), r.key.clone()));
            }
        }
        // A key is in flight only while its payment waits on other shards or its provider. A journal that kept only the
        // first events of a batch (power loss mid-write) can leave a finished step still carrying its key:
        // a retry must then run again rather than wait for an answer that will never come.
        if let Some(r) = &payment.pending_idempotency
            && payment.is_in_flight()
        {
            self.in_flight_keys.insert((r.scope.clone(), r.key.clone()), payment.id.clone());
        }
        if payment.is_in_flight() {
            self.in_flight.insert(payment.id.clone());
        } else {
            self.in_flight.remove(&payment.id);
        }
        if payment.status == PaymentStatus::Pending
            && payment.holding == Holding::Reserved
            && let Some(at) = payment.expires_at
        {
            self.payment_expiry.insert((at, payment.id.clone()));
        }
        self.payments.insert(payment.id.clone(), payment);
    }

    fn apply_notification(&mut self, notification: &Notification, batch: &mut WriteBatch) {
        if self.notifications.get(&notification.id).is_some_and(|old| old.version >= notification.version) {
            return;
        }
        batch.put(Ks::Notifications, notification.id.as_bytes(), &views::encode(notification));
        batch.put(Ks::NotificationsByUser, &views::by_user_key(&notification.user_id, notification.created_at, &notification.id), &[]);
        self.keep_notification(notification.clone());
    }

    fn keep_notification(&mut self, notification: Notification) {
        if let Some(old) = self.notifications.get(&notification.id) {
            if let Some(at) = old.send_at {
                self.scheduled.remove(&(at, old.id.clone()));
            }
            if let Some(at) = old.expires_at {
                self.notification_expiry.remove(&(at, old.id.clone()));
            }
            self.unread.remove(&(old.user_id.clone(), old.id.clone()));
        }
        let delivering = if notification.status == "sent" { notification.next_attempt_at } else { None };
        self.delivery_due.set(&notification.id, delivering);
        if let Some(at) = notification.expires_at {
            self.notification_expiry.insert((at, notification.id.clone()));
        }
        if notification.read_at.is_none() {
            self.unread.insert((notification.user_id.clone(), notification.id.clone()));
        }
        if notification.status == "pending"
            && let Some(at) = notification.send_at
        {
            self.scheduled.insert((at, notification.id.clone()));
        }
        self.notifications.insert(notification.id.clone(), notification);
    }

    fn apply_notification_deleted(&mut self, id: &str, version: &u64, batch: &mut WriteBatch) {
        if let Some(old) = self.notifications.get(id) {
            if old.version >= *version {
                return;
            }
            if let Some(at) = old.send_at {
                self.scheduled.remove(&(at, id.to_string()));
            }
            if let Some(at) = old.expires_at {
                self.notification_expiry.remove(&(at, id.to_string()));
            }
            self.unread.remove(&(old.user_id.clone(), id.to_string()));
            self.delivery_due.set(id, None);
            batch.delete(Ks::NotificationsByUser, &views::by_user_key(&old.user_id, old.created_at, id));
            batch.delete(Ks::Notifications, id.as_bytes());
            self.notifications.remove(id);
        }
    }

    fn apply_idempotency(&mut self, record: &IdempotencyRecord, batch: &mut WriteBatch) {
        batch.put(Ks::Idempotency, &views::idempotency_key(&record.scope, &record.key), &views::encode(record));
        self.keep_idempotency(record.clone());
    }

    fn keep_idempotency(&mut self, record: IdempotencyRecord) {
        let key = (record.scope.clone(), record.key.clone());
        if let Some(old) = self.idempotency.get(&key) {
            self.idempotency_expiry.remove(&(old.expires_at, key.0.clone(), key.1.clone()));
        }
        self.idempotency_expiry.insert((record.expires_at, key.0.clone(), key.1.clone()));
        self.idempotency.insert(key, record);
    }

    fn apply_idempotency_deleted(&mut self, scope: &str, key: &str, batch: &mut WriteBatch) {
        if let Some(old) = self.idempotency.remove(&(scope.to_string(), key.to_string())) {
            self.idempotency_expiry.remove(&(old.expires_at, scope.to_string(), key.to_string()));
            batch.delete(Ks::Idempotency, &views::idempotency_key(scope, key));
        }
    }

    /// Sizes the tables for the records recovery is about to load: growing by doubling left the copies'
    /// memory behind (100 MiB of RSS at 1M baskets). The hints can overcount (fjall's count includes
    /// deleted keys not yet compacted away), so at most `LOAD_RESERVE_MAX` each; past that tables grow.
    pub fn reserve_for_load(&mut self, reservations: usize, baskets: usize, payments: usize, notifications: usize, idempotency: usize) {
        const LOAD_RESERVE_MAX: usize = 1 << 20;
        self.reservations.reserve(reservations.min(LOAD_RESERVE_MAX));
        self.baskets.reserve(baskets.min(LOAD_RESERVE_MAX));
        self.payments.reserve(payments.min(LOAD_RESERVE_MAX));
        self.notifications.reserve(notifications.min(LOAD_RESERVE_MAX));
        self.idempotency.reserve(idempotency.min(LOAD_RESERVE_MAX));
    }

    /// Loads one record from a store during recovery: into memory and its indexes, without projecting
    /// it back into store writes (the store is where it came from).
    pub fn load(&mut self, record: Loaded) {
        match record {
            Loaded::Product(product) => {
                self.keep_product(Arc::new(product));
            }
            Loaded::Reservation(reservation) => {
                let key = reservation_key(&reservation.payment_id, reservation.attempt);
                self.keep_reservation(key, reservation);
            }
            Loaded::Basket(basket) => self.keep_basket(basket),
            Loaded::Payment(payment) => self.keep_payment(payment),
            Loaded::Notification(notification) => self.keep_notification(notification),
            Loaded::Idempotency(record) => self.keep_idempotency(record),
            Loaded::Wallet(wallet) => {
                self.wallets.insert(wallet.user_id.clone(), wallet);
            }
        }
    }
}

/// One record read from a store at recovery.
pub enum Loaded {
    Product(Product),
    Reservation(Reservation),
    Basket(Basket),
    Payment(Payment),
    Notification(Notification),
    Idempotency(IdempotencyRecord),
    Wallet(Wallet),
}
