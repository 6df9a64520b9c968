//! The provider's answers, on the payer's shard: a payment whose provider Kassa charges through waits in
//! `Charging` (its stock reserved) for the charge, then sells its stock or gives it back; a refund waits
//! as a pending record for the provider to give the money back.

use super::super::*;

impl Core {
    pub(in crate::core) fn charges_through(&self, provider: &str) -> bool {
        self.cfg.charged_providers.iter().any(|p| p == provider)
    }

    /// The provider runner's report on a charge. An answer for another attempt, or for a payment no
    /// longer charging (a duplicate after a re-drive), changes nothing.
    pub(in crate::core) fn charge_outcome(
        &mut self,
        payment_id: &str,
        attempt: u32,
        result: CallOutcome,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut p = self.payment_mut_checked(payment_id)?;
        if p.holding != Holding::Charging || p.attempt != attempt {
            return Ok(Reply::Payment(p));
        }
        let (code, reason, refused) = match result {
            CallOutcome::Succeeded { provider_id: charge_id } => {
                p.provider_id = charge_id;
                p.holding = Holding::Committing;
                p.updated_at = now;
                p.waiting_on = self.payment_shards(&p);
                let p = self.put_payment(p, fx);
                self.send_step(&p, now, fx);
                return Ok(Reply::Payment(p));
            }
            CallOutcome::Unknown { reason } => {
                tracing::warn!(payment_id, reason, "charge outcome unknown; asking the provider again later");
                return Ok(self.answer_still_pending(p, fx));
            }
            CallOutcome::Declined { code, reason } => {
                let refused = EngineError::new(ErrorKind::Declined, format!("payment declined: {reason}"));
                (code, reason, refused)
            }
            CallOutcome::Failed { code, reason } => {
                let refused =
                    EngineError::unavailable(format!("payment provider failed: {reason}; nothing was charged, retry the payment"));
                (code, reason, refused)
            }
        };
        p.status = PaymentStatus::Failed;
        p.failure_reason = reason;
        p.error_code = code;
        p.holding = Holding::Releasing;
        p.updated_at = now;
        p.waiting_on = self.payment_shards(&p);
        self.refusals.insert(p.id.clone(), refused);
        let p = self.put_payment(p, fx);
        self.send_step(&p, now, fx);
        self.notify_payment_failed(&p, now, fx);
        Ok(Reply::Payment(p))
    }

    /// The provider has not said yet: its waiting callers get the payment as it stands, with no idempotency
    /// record, so that a retry with their key waits for the real outcome.
    fn answer_still_pending(&mut self, p: Payment, fx: &mut Effects) -> Reply {
        for token in self.waiters.remove(&p.id).unwrap_or_default() {
            fx.replies.push((token, Ok(Reply::Payment(p.clone()))));
        }
        Reply::Payment(p)
    }

    /// The provider runner's report on a refund. A report for a refund no longer pending changes nothing.
    /// Takes back a refund that had succeeded and then failed at the provider: the refund is `failed`,
    /// the refunded amount shrinks by it, and a payment with nothing refunded left is `completed` again.
    /// Goods that a full refund put back on sale stay on sale (they may be sold already); the user is told.
    fn refund_reversed(&mut self, p: &mut Payment, refund_id: &str, reason: String, now: Micros, fx: &mut Effects) {
        let Some(r) = p.refunds.iter_mut().find(|r| r.id == refund_id) else { return };
        r.status = RefundStatus::Failed;
        r.failure_reason.clone_from(&reason);
        r.updated_at = now;
        let amount = r.amount;
        p.refunded_amount -= amount;
        if p.refunded_amount == 0 {
            p.status = PaymentStatus::Completed;
        }
        p.updated_at = now;
        let data = vec![
            ("payment_id".to_string(), p.id.clone()),
            ("amount".to_string(), crate::money::format_minor(amount, self.cfg.currency)),
            ("reason".to_string(), reason),
        ];
        self.notify(&p.user_id, "Refund Failed", "A refund of your payment could not be completed", "payment", "high", data, now, fx);
    }

    pub(in crate::core) fn refund_outcome(
        &mut self,
        payment_id: &str,
        refund_id: &str,
        result: CallOutcome,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut p = self.payment_mut_checked(payment_id)?;
        // The provider says a refund it had made has failed after all (Stripe's `refund.updated`): the
        // money stayed with the shop, so the payment no longer counts it as refunded.
        if let CallOutcome::Declined { reason, .. } = &result
            && p.refunds.iter().any(|r| r.id == refund_id && r.status == RefundStatus::Succeeded)
        {
            self.refund_reversed(&mut p, refund_id, reason.clone(), now, fx);
            return Ok(Reply::Payment(self.put_payment(p, fx)));
        }
        if p.pending_refund().is_none_or(|r| r.id != refund_id) {
            return Ok(Reply::Payment(p));
        }
        let refused = match result {
            CallOutcome::Succeeded { provider_id } => {
                self.refund_done(&mut p, refund_id, provider_id, now, fx);
                let p = self.put_payment(p, fx);
                if p.waiting_on.is_empty() {
                    self.finish_waiters(payment_id, Ok(Reply::Payment(p.clone())), now, fx);
                    self.clear_pending_idempotency(payment_id, fx);
                } else {
                    // Everything is back: answered once the goods are back on sale too.
                    self.send_step(&p, now, fx);
                }
                return Ok(Reply::Payment(p));
            }
            CallOutcome::Unknown { reason } => {
                tracing::warn!(payment_id, refund_id, reason, "refund outcome unknown; asking the provider again later");
                return Ok(self.answer_still_pending(p, fx));
            }
            CallOutcome::Declined { reason, .. } => {
                (reason.clone(), EngineError::conflict(format!("refund refused by the payment provider: {reason}")))
            }
            CallOutcome::Failed { reason, .. } => {
                (reason.clone(), EngineError::unavailable(format!("payment provider failed: {reason}; nothing was refunded, try again")))
            }
        };
        let (reason, refused) = refused;
        if let Some(r) = p.refunds.iter_mut().find(|r| r.id == refund_id) {
            r.status = RefundStatus::Failed;
            r.failure_reason = reason;
            r.updated_at = now;
        }
        p.updated_at = now;
        let p = self.put_payment(p, fx);
        self.finish_waiters(payment_id, Err(refused), now, fx);
        self.clear_pending_idempotency(payment_id, fx);
        Ok(Reply::Payment(p))
    }
}
