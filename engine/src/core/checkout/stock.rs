//! The stock side of checkout, on each product's shard: reserve all lines or none, commit (sell), unwind
//! (release held units or restock sold ones). Answers go back to the payer's shard.

use super::super::*;

impl Core {
    pub(in crate::core) fn peer(&mut self, msg: PeerMsg, now: Micros, fx: &mut Effects) {
        match msg {
            PeerMsg::Reserve { payment_id, attempt, user_shard, lines, deadline } => {
                self.reserve(payment_id, attempt, user_shard, lines, deadline, now, fx)
            }
            PeerMsg::Commit { payment_id, attempt, user_shard } => self.commit(payment_id, attempt, user_shard, now, fx),
            PeerMsg::Unwind { payment_id, attempt, user_shard } => self.unwind(payment_id, attempt, user_shard, now, fx),
            PeerMsg::Answer { payment_id, attempt, from, step, result } => self.answer(payment_id, attempt, from, step, result, now, fx),
        }
    }

    pub(in crate::core) fn reply_to(
        &self,
        user_shard: u32,
        payment_id: String,
        attempt: u32,
        step: Step,
        result: Result<Vec<PricedLine>, EngineError>,
        fx: &mut Effects,
    ) {
        fx.sends.push((user_shard, PeerMsg::Answer { payment_id, attempt, from: self.shard, step, result }));
    }

    pub(in crate::core) fn priced(&self, lines: &[(u64, i64)]) -> Vec<PricedLine> {
        lines
            .iter()
            .filter_map(|(id, _)| self.products.get(id))
            .map(|p| PricedLine { product_id: p.id, name: p.name.clone(), price: p.price, category: p.category.clone() })
            .collect()
    }

    pub(in crate::core) fn put_reservation(&mut self, reservation: Reservation, fx: &mut Effects) {
        self.emit(Event::ReservationPut { reservation }, fx);
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::core) fn adjust_stock(
        &mut self,
        id: u64,
        available: i64,
        reserved: i64,
        sold: i64,
        cause: ProductCause,
        now: Micros,
        fx: &mut Effects,
    ) {
        let Some(mut product) = self.products.get(&id).map(|p| Product::clone(p)) else { return };
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
    pub(in crate::core) fn reserve(
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
                // Which line was short is not kept: say which one is short now, if any still is.
                ReservationState::Refused => Err(self
                    .first_short_line(&existing.lines)
                    .unwrap_or_else(|| EngineError::new(ErrorKind::InsufficientStock, "insufficient stock"))),
                ReservationState::Released | ReservationState::Restocked => Err(EngineError::conflict("reservation was released")),
            };
            self.reply_to(user_shard, payment_id, attempt, Step::Reserve, result, fx);
            return;
        }
        // All lines or none.
        let shortage = self.first_short_line(&lines);
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

    /// Why the lines cannot all be held now, if they cannot.
    fn first_short_line(&self, lines: &[(u64, i64)]) -> Option<EngineError> {
        lines.iter().find_map(|&(id, qty)| match self.products.get(&id) {
            None => Some(EngineError::conflict(format!("product not found: {id}")).because(Refusal::ProductNotFound { product_id: id })),
            Some(p) if p.available < qty => Some(EngineError::insufficient_stock(
                format!("insufficient stock for product {id}: requested {qty}, available {}", p.available),
                id,
                qty,
                p.available,
            )),
            Some(_) => None,
        })
    }

    pub(in crate::core) fn commit(&mut self, payment_id: String, attempt: u32, user_shard: u32, now: Micros, fx: &mut Effects) {
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
            _ => Err(EngineError::conflict("reservation expired or was released")),
        };
        self.reply_to(user_shard, payment_id, attempt, Step::Commit, result, fx);
    }

    pub(in crate::core) fn unwind(&mut self, payment_id: String, attempt: u32, user_shard: u32, now: Micros, fx: &mut Effects) {
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
}
