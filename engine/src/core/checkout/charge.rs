//! The provider's side of processing, on the payer's shard: a payment whose provider Kassa charges
//! through waits in `Charging` (its stock reserved) for the provider's answer, then sells its stock or
//! gives it back.

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
        result: ChargeResult,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut p = self.payment_mut_checked(payment_id)?;
        if p.holding != Holding::Charging || p.attempt != attempt {
            return Ok(Reply::Payment(p));
        }
        let (code, reason, refused) = match result {
            ChargeResult::Charged { charge_id } => {
                p.provider_id = charge_id;
                p.holding = Holding::Committing;
                p.updated_at = now;
                p.waiting_on = self.payment_shards(&p);
                let p = self.put_payment(p, fx);
                self.send_step(&p, now, fx);
                return Ok(Reply::Payment(p));
            }
            ChargeResult::Unknown { reason } => {
                // The callers learn that it is still processing; the key stays on the payment, so a
                // retry with it waits for the real outcome.
                tracing::warn!(payment_id, reason, "charge outcome unknown; asking the provider again later");
                for token in self.waiters.remove(payment_id).unwrap_or_default() {
                    fx.replies.push((token, Ok(Reply::Payment(p.clone()))));
                }
                return Ok(Reply::Payment(p));
            }
            ChargeResult::Declined { code, reason } => {
                let refused = EngineError::new(ErrorKind::Declined, format!("payment declined: {reason}"));
                (code, reason, refused)
            }
            ChargeResult::Failed { code, reason } => {
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
}
