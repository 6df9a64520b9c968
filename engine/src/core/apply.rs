//! Applying events: the only place memory changes, shared by live commands and journal replay. Every
//! apply also projects the event into store writes and keeps the in-memory indexes (expiries, in-flight
//! payments) in step.

use super::*;
use crate::store::WriteBatch;

impl Core {
    /// Applies one event to memory and projects it into store writes. Idempotent for records it has
    /// already seen (a record never replaces a newer version).
    pub fn apply(&mut self, lsn: u64, event: &Event, writes: &mut Writes) {
        let batch = writes.batch(event.view(), lsn);
        match event {
            Event::ProductPut { product, .. } => self.apply_product(product, batch),
            Event::ProductDeleted { id, version } => self.apply_product_deleted(id, version, batch),
            Event::ReservationPut { reservation } => self.apply_reservation(reservation, batch),
            Event::BasketPut { basket, .. } => self.apply_basket(basket, batch),
            Event::BasketDeleted { user_id, version, .. } => self.apply_basket_deleted(user_id, version, batch),
            Event::PaymentPut { payment, .. } => self.apply_payment(payment, batch),
            Event::NotificationPut { notification } => self.apply_notification(notification, batch),
            Event::NotificationDeleted { id, version, .. } => self.apply_notification_deleted(id, version, batch),
            Event::IdempotencyPut { record } => self.apply_idempotency(record, batch),
            Event::IdempotencyDeleted { scope, key } => self.apply_idempotency_deleted(scope, key, batch),
        }
    }

    fn apply_product(&mut self, product: &Product, batch: &mut WriteBatch) {
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

    fn apply_product_deleted(&mut self, id: &u64, version: &u64, batch: &mut WriteBatch) {
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

    fn apply_reservation(&mut self, reservation: &Reservation, batch: &mut WriteBatch) {
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

    fn apply_basket(&mut self, basket: &Basket, batch: &mut WriteBatch) {
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
        // A key is in flight only while its payment waits on other shards. A journal that kept only the
        // first events of a batch (power loss mid-write) can leave a finished step still carrying its key:
        // a retry must then run again rather than wait for an answer that will never come.
        if let Some(r) = &payment.pending_idempotency
            && !payment.waiting_on.is_empty()
        {
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

    fn apply_notification(&mut self, notification: &Notification, batch: &mut WriteBatch) {
        if let Some(old) = self.notifications.get(&notification.id) {
            if old.version >= notification.version {
                return;
            }
            if let Some(at) = old.send_at {
                self.scheduled.remove(&(at, old.id.clone()));
            }
            if let Some(at) = old.expires_at {
                self.notification_expiry.remove(&(at, old.id.clone()));
            }
            self.unread.remove(&(old.user_id.clone(), old.id.clone()));
        }
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
        batch.put(Ks::Notifications, notification.id.as_bytes(), &views::encode(notification));
        batch.put(Ks::NotificationsByUser, &views::by_user_key(&notification.user_id, notification.created_at, &notification.id), &[]);
        self.notifications.insert(notification.id.clone(), notification.clone());
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
            batch.delete(Ks::NotificationsByUser, &views::by_user_key(&old.user_id, old.created_at, id));
            batch.delete(Ks::Notifications, id.as_bytes());
            self.notifications.remove(id);
        }
    }

    fn apply_idempotency(&mut self, record: &IdempotencyRecord, batch: &mut WriteBatch) {
        let key = (record.scope.clone(), record.key.clone());
        if let Some(old) = self.idempotency.get(&key) {
            self.idempotency_expiry.remove(&(old.expires_at, key.0.clone(), key.1.clone()));
        }
        self.idempotency_expiry.insert((record.expires_at, key.0.clone(), key.1.clone()));
        batch.put(Ks::Idempotency, &views::idempotency_key(&record.scope, &record.key), &views::encode(record));
        self.idempotency.insert(key, record.clone());
    }

    fn apply_idempotency_deleted(&mut self, scope: &str, key: &str, batch: &mut WriteBatch) {
        if let Some(old) = self.idempotency.remove(&(scope.to_string(), key.to_string())) {
            self.idempotency_expiry.remove(&(old.expires_at, scope.to_string(), key.to_string()));
            batch.delete(Ks::Idempotency, &views::idempotency_key(scope, key));
        }
    }

    /// Loads one record from a store during recovery (no events, no LSNs).
    pub fn load(&mut self, event: &Event) {
        let mut scratch = Writes::default();
        self.apply(0, event, &mut scratch);
    }
}
