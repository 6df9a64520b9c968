//! Checkout across shards with stock reservations: the payer side (the user's shard, [`payer`]) drives
//! each payment through reserve → commit or unwind; the stock side (each product's shard, [`stock`])
//! holds, sells and gives back units. Every message is idempotent, so re-sending is always safe.

mod payer;
mod provider;
mod stock;

use super::*;

impl Core {
    pub(in crate::core) fn payment_mut_checked(&self, payment_id: &str) -> Result<Payment, EngineError> {
        self.payments.get(payment_id).cloned().ok_or_else(|| payment_not_found(payment_id))
    }

    pub(in crate::core) fn payment_shards(&self, p: &Payment) -> Vec<u32> {
        let mut shards: Vec<u32> = p.items.iter().map(|i| shard_of_product(i.product_id, self.cfg.shards)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    pub(in crate::core) fn lines_for_shard(&self, p: &Payment, shard: u32) -> Vec<(u64, i64)> {
        p.items.iter().filter(|i| shard_of_product(i.product_id, self.cfg.shards) == shard).map(|i| (i.product_id, i.quantity)).collect()
    }

    /// Sends the message of the payment's current holding step to every shard still to answer, or asks
    /// its provider for the charge.
    pub(in crate::core) fn send_step(&mut self, p: &Payment, now: Micros, fx: &mut Effects) {
        if p.holding == Holding::Charging {
            fx.calls.push(ProviderCall::Charge(ChargeCall::of(p)));
        }
        if let Some(refund) = p.pending_refund() {
            fx.calls.push(ProviderCall::Refund(RefundCall::of(p, refund)));
        }
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
                Holding::Reserved | Holding::Committed | Holding::Released | Holding::Restocked | Holding::Charging => continue,
            };
            fx.sends.push((shard, msg));
        }
        self.last_sent.insert(p.id.clone(), now);
    }

    pub(in crate::core) fn put_payment(&mut self, payment: Payment, fx: &mut Effects) -> Payment {
        let id = payment.id.clone();
        let cause = PaymentCause::of(self.payments.get(&id), &payment);
        self.emit(Event::PaymentPut { payment, cause }, fx);
        self.payments[&id].clone()
    }

    /// Records the payment and sends its current step to the shards in `waiting_on` (or its provider); the
    /// caller is answered once they all have (so a read after a cancel's or refund's answer sees the units
    /// back on sale), or at once when nothing is asked. The idempotency key rides on the payment until then.
    pub(in crate::core) fn start_step(
        &mut self,
        mut p: Payment,
        token: u64,
        idem: Option<IdemRef>,
        now: Micros,
        fx: &mut Effects,
    ) -> Option<Reply> {
        let waits = p.is_in_flight();
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

    pub(in crate::core) fn finish_waiters(&mut self, payment_id: &str, outcome: Result<Reply, EngineError>, now: Micros, fx: &mut Effects) {
        if let Some(idem) = self.payments.get(payment_id).and_then(|p| p.pending_idempotency.clone()) {
            let key = IdempotencyKey { scope: idem.scope, key: idem.key, fingerprint: idem.fingerprint };
            self.record_idempotency(&key, &outcome, now, fx);
        }
        for token in self.waiters.remove(payment_id).unwrap_or_default() {
            fx.replies.push((token, outcome.clone()));
        }
    }

    pub(in crate::core) fn clear_pending_idempotency(&mut self, payment_id: &str, fx: &mut Effects) {
        if let Some(mut p) = self.payments.get(payment_id).cloned() {
            self.last_sent.remove(payment_id);
            if p.pending_idempotency.is_some() {
                p.pending_idempotency = None;
                self.put_payment(p, fx);
            }
        }
    }
}

pub(crate) fn payment_not_found(payment_id: &str) -> EngineError {
    EngineError::not_found(format!("payment not found: {payment_id}"))
        .because(Refusal::PaymentNotFound { payment_id: payment_id.to_string() })
}
