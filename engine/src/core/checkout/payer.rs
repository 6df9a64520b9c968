//! The payer side of checkout, on the user's shard: create, process, retry, cancel, refund, expire, and
//! the answers of the product shards.

use super::super::*;
use crate::core::validate::{check_map, check_text, check_token, check_user};

impl Core {
    /// The user's basket and the payment's currency, if the checkout request is acceptable.
    fn checkout_basket(&self, input: &PaymentInput, now: Micros) -> Result<(Basket, String), EngineError> {
        check_user(&input.user_id)?;
        check_text("basket_id", &input.basket_id, limits::TEXT_SHORT_MAX, false)?;
        check_text("method", &input.method, limits::TEXT_SHORT_MAX, true)?;
        check_text("provider", &input.provider, limits::TEXT_SHORT_MAX, true)?;
        check_text("description", &input.description, limits::TEXT_LONG_MAX, false)?;
        check_map("metadata", &input.metadata)?;
        check_token(&input.token)?;
        if self.charges_through(&input.provider) && input.token.is_empty() {
            return Err(EngineError::invalid(format!("validation failed: token is required for provider {}", input.provider)));
        }
        if !PAYMENT_METHODS.contains(&input.method.as_str()) {
            return Err(EngineError::invalid(format!("validation failed: method must be one of {}", PAYMENT_METHODS.join(", "))));
        }
        let currency = if input.currency.is_empty() { self.cfg.currency.code().to_string() } else { input.currency.to_ascii_uppercase() };
        if currency != self.cfg.currency.code() {
            return Err(EngineError::invalid(format!(
                "validation failed: currency {currency} is not accepted; prices are in {}",
                self.cfg.currency
            )));
        }
        let Some(basket) = self.live_basket(&input.user_id, now) else {
            return Err(EngineError::not_found(format!("basket not found for user {}", input.user_id))
                .because(Refusal::BasketNotFound { user_id: input.user_id.clone() }));
        };
        if basket.lines.is_empty() {
            return Err(EngineError::invalid("basket is empty or invalid"));
        }
        Ok((basket.clone(), currency))
    }

    /// The checkout charged with the stored method it names: the method's token, and its provider and
    /// type where the request gives none (a different one is refused).
    fn with_stored_method(&self, mut input: PaymentInput) -> Result<PaymentInput, EngineError> {
        if input.payment_method_id.is_empty() {
            return Ok(input);
        }
        check_text("payment_method_id", &input.payment_method_id, limits::ID_MAX, false)?;
        if !input.token.is_empty() {
            return Err(EngineError::invalid("validation failed: give a token or a payment_method_id, not both"));
        }
        check_user(&input.user_id)?;
        let stored = self.stored_method(&input.user_id, &input.payment_method_id)?;
        for (field, given, kept) in [("provider", &mut input.provider, &stored.provider), ("method", &mut input.method, &stored.kind)] {
            if given.is_empty() {
                given.clone_from(kept);
            } else if given != kept {
                return Err(EngineError::invalid(format!("validation failed: {field} {given} is not the stored method's ({kept})")));
            }
        }
        input.token.clone_from(&stored.token);
        Ok(input)
    }

    pub(in crate::core) fn create_payment(
        &mut self,
        input: PaymentInput,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Option<Reply>, EngineError> {
        let input = self.with_stored_method(input)?;
        let (basket, currency) = self.checkout_basket(&input, now)?;
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
            token: input.token,
            payment_method_id: input.payment_method_id,
            description: input.description,
            metadata: input.metadata,
            items,
            holding: Holding::Reserving,
            waiting_on: Vec::new(),
            failure_reason: String::new(),
            error_code: String::new(),
            refunded_amount: 0,
            refund_reason: String::new(),
            refund_id: String::new(),
            refunds: Vec::new(),
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

    pub(in crate::core) fn process_payment(
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
            // Another process call is charging or committing this payment: wait for its outcome instead of
            // charging or selling twice.
            (PaymentStatus::Processing, Holding::Committing | Holding::Charging) => {
                self.waiters.entry(p.id.clone()).or_default().push(token);
                Ok(None)
            }
            (PaymentStatus::Pending, Holding::Reserved) => {
                if p.expires_at.is_some_and(|at| now > at) {
                    self.expire_payment(payment_id, now, fx);
                    return Err(EngineError::new(ErrorKind::Expired, "payment has expired"));
                }
                p.status = PaymentStatus::Processing;
                p.updated_at = now;
                if self.charges_through(&p.provider) {
                    // The provider says what the charge is called; the client has no say.
                    p.holding = Holding::Charging;
                } else {
                    p.holding = Holding::Committing;
                    p.provider_id = provider_id;
                    p.waiting_on = self.payment_shards(&p);
                }
                Ok(self.start_step(p, token, idem, now, fx))
            }
            (status, _) => Err(EngineError::conflict(format!("payment cannot be processed, current status: {}", status.as_str()))),
        }
    }

    pub(in crate::core) fn retry_payment(
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
        p.error_code.clear();
        p.expires_at = Some(now + self.cfg.payment_ttl);
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        Ok(self.start_step(p, token, idem, now, fx))
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::core) fn cancel_payment(
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
            p.error_code = "failed_by_administrator".to_string();
        }
        p.holding = Holding::Releasing;
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        if to == PaymentStatus::Failed {
            self.notify_payment_failed(&p, now, fx);
        }
        Ok(self.start_step(p, token, idem, now, fx))
    }

    /// A refund is a record of its own on the payment; partial ones add up to at most the amount. Through a
    /// provider Kassa charges, it waits for the provider's answer; otherwise it is done at once.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::core) fn refund_payment(
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
        let refundable = p.status == PaymentStatus::Completed || (p.status == PaymentStatus::Refunded && p.refundable() > 0);
        if !refundable {
            return Err(EngineError::conflict(format!("payment cannot be refunded, current status: {}", p.status.as_str())));
        }
        if p.pending_refund().is_some() {
            return Err(EngineError::conflict("payment cannot be refunded now: a refund is still with the provider"));
        }
        if p.refunds.len() >= limits::REFUNDS_MAX {
            return Err(EngineError::conflict(format!("payment cannot be refunded: at most {} refunds", limits::REFUNDS_MAX)));
        }
        let amount = match amount {
            Some(a) if a > 0 => a,
            _ => p.refundable(),
        };
        if amount > p.amount {
            return Err(EngineError::invalid("validation failed: refund amount cannot exceed payment amount"));
        }
        if amount > p.refundable() {
            return Err(EngineError::invalid("validation failed: refund amount cannot exceed what is left to refund"));
        }
        let refund = Refund {
            id: format!("re_{}", self.new_id(now)),
            amount,
            reason,
            status: RefundStatus::Pending,
            provider_refund_id: String::new(),
            failure_reason: String::new(),
            created_at: now,
            updated_at: now,
        };
        let refund_id = refund.id.clone();
        p.refunds.push(refund);
        p.updated_at = now;
        if !self.charges_through(&p.provider) {
            self.refund_done(&mut p, &refund_id, String::new(), now, fx);
        }
        Ok(self.start_step(p, token, idem, now, fx))
    }

    /// The refund `refund_id` gave the money back: the payment is `refunded` by the sum so far, and once
    /// everything is back the goods go back on sale (a partial refund says nothing about which units).
    pub(in crate::core) fn refund_done(
        &mut self,
        p: &mut Payment,
        refund_id: &str,
        provider_refund_id: String,
        now: Micros,
        fx: &mut Effects,
    ) {
        let Some(r) = p.refunds.iter_mut().find(|r| r.id == refund_id) else { return };
        r.status = RefundStatus::Succeeded;
        r.provider_refund_id = provider_refund_id;
        r.updated_at = now;
        let (amount, reason) = (r.amount, r.reason.clone());
        p.status = PaymentStatus::Refunded;
        p.refunded_amount += amount;
        p.refund_reason.clone_from(&reason);
        p.refund_id = refund_id.to_string();
        p.updated_at = now;
        if self.cfg.restock_on_refund && p.refundable() == 0 && p.holding == Holding::Committed {
            p.holding = Holding::Restocking;
            p.waiting_on = self.payment_shards(p);
        }
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(amount, self.cfg.currency)),
            ("reason".to_string(), reason),
        ];
        self.notify(&p.user_id, "Payment Refunded", "Your payment has been refunded successfully", "payment", "normal", data, now, fx);
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::core) fn update_payment(
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

    pub(in crate::core) fn expire_payment(&mut self, payment_id: &str, now: Micros, fx: &mut Effects) {
        let Some(mut p) = self.payments.get(payment_id).cloned() else { return };
        if !(p.status == PaymentStatus::Pending && p.holding == Holding::Reserved) {
            return;
        }
        p.status = PaymentStatus::Failed;
        p.failure_reason = "payment has expired".to_string();
        p.error_code = "payment_expired".to_string();
        p.holding = Holding::Releasing;
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        let p = self.put_payment(p, fx);
        self.send_step(&p, now, fx);
        self.notify_payment_failed(&p, now, fx);
    }

    pub(in crate::core) fn notify_payment_failed(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(p.amount, self.cfg.currency)),
            ("reason".to_string(), p.failure_reason.clone()),
            ("error_code".to_string(), p.error_code.clone()),
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

    #[allow(clippy::too_many_arguments)]
    pub(in crate::core) fn answer(
        &mut self,
        payment_id: String,
        attempt: u32,
        from: u32,
        step: Step,
        result: Result<Vec<PricedLine>, EngineError>,
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
            (Err(refused), Step::Reserve | Step::Commit) if p.failure_reason.is_empty() => {
                p.failure_reason.clone_from(&refused.message);
                p.error_code = error_code_of(refused).to_string();
                self.refusals.insert(p.id.clone(), refused.clone());
            }
            _ => {}
        }
        p.updated_at = now;
        if !p.waiting_on.is_empty() {
            self.put_payment(p, fx);
            return;
        }
        self.finish_step(p, step, now, fx);
    }

    /// Every shard has answered the payment's current step: move it to its next state.
    fn finish_step(&mut self, mut p: Payment, step: Step, now: Micros, fx: &mut Effects) {
        let payment_id = p.id.clone();
        match step {
            Step::Reserve if p.failure_reason.is_empty() => {
                p.amount = p.items.iter().map(PaymentItem::subtotal).sum();
                p.holding = Holding::Reserved;
                if p.process_after_reserve {
                    p.process_after_reserve = false;
                    p.status = PaymentStatus::Processing;
                    if self.charges_through(&p.provider) {
                        p.holding = Holding::Charging;
                    } else {
                        p.holding = Holding::Committing;
                        p.waiting_on = self.payment_shards(&p);
                    }
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
                // The refusal as the product shard gave it; after a crash only its text is left.
                let refused = self.refusals.remove(&payment_id).unwrap_or_else(|| EngineError::conflict(p.failure_reason.clone()));
                let p = self.put_payment(p, fx);
                self.send_step(&p, now, fx);
                self.notify_payment_failed(&p, now, fx);
                self.finish_waiters(&payment_id, Err(refused), now, fx);
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
                // A declined charge is answered once its stock is back on sale, as a refusal.
                let outcome = match self.refusals.remove(&payment_id) {
                    Some(refused) => Err(refused),
                    None => Ok(Reply::Payment(p)),
                };
                self.finish_waiters(&payment_id, outcome, now, fx);
                self.clear_pending_idempotency(&payment_id, fx);
            }
            Step::Reserve => unreachable!("covered by the guarded arms above"),
        }
    }

    /// A completed payment empties the basket it came from and tells the user.
    pub(in crate::core) fn complete_side_effects(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
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
}

/// The stable code a refusal from a product shard fails a payment with.
fn error_code_of(refused: &EngineError) -> &'static str {
    match refused.kind {
        ErrorKind::InsufficientStock => "insufficient_stock",
        ErrorKind::NotFound => "product_not_found",
        _ => "payment_failed",
    }
}
