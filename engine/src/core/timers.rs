//! Clock-driven work: expiries, scheduled sends, due delivery attempts, and re-driving unanswered cross-shard steps.

use super::*;

impl Core {
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
            if let Some(n) = self.notifications.get(&id).cloned() {
                self.send(n, now, fx);
            }
        }
        self.hand_out_due(now, fx);
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
        self.finish_backlogs(fx);
        self.redrive(now, fx);
    }

    /// Re-sends the current step of payments still waiting on other shards (or their provider) that have
    /// not been sent for a while (or never, since recovery), at most `REDRIVE_PER_TICK_MAX` per call: after
    /// a recovery with many unfinished checkouts, the following ticks work through the rest.
    pub fn redrive(&mut self, now: Micros, fx: &mut Effects) {
        const REDRIVE_PER_TICK_MAX: usize = 1024;
        let stuck: Vec<Payment> = self
            .in_flight
            .iter()
            .filter_map(|id| self.payments.get(id))
            .filter(|p| {
                let after = if p.waits_on_provider() { self.cfg.charge_redrive_after } else { self.cfg.redrive_after };
                self.last_sent.get(&p.id).is_none_or(|at| now - at >= after)
            })
            .take(REDRIVE_PER_TICK_MAX)
            .cloned()
            .collect();
        for p in stuck {
            self.send_step(&p, now, fx);
        }
    }
}
