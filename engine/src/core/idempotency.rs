//! The front door of a client command: a retry with a known idempotency key is answered from its record
//! (or joins the attempt still in flight); a first attempt runs and its outcome is recorded.

use super::*;

impl Core {
    pub(super) fn client(&mut self, token: u64, request: Request, now: Micros, catalog: &dyn CatalogView, fx: &mut Effects) {
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

    pub(super) fn record_idempotency(
        &mut self,
        idem: &IdempotencyKey,
        outcome: &Result<Reply, EngineError>,
        now: Micros,
        fx: &mut Effects,
    ) {
        // Internal failures are not final outcomes: a retry should run again.
        if matches!(outcome, Err(e) if e.is_transient()) {
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
}
