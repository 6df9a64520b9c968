//! Notification commands, and the notifications the engine itself raises (payments, stock, baskets).

use super::validate::{check_text, check_user, validate_notification};
use super::*;
use crate::delivery::{DeliveryCall, DeliveryPolicy, DeliveryResult};

/// Most notifications one read-all or cleanup step touches (a command, then one per tick).
const STEP_WORK_MAX: usize = 1024;

impl Core {
    pub(super) fn create_notification(
        &mut self,
        input: NotificationInput,
        send_at: Option<Micros>,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        validate_notification(&input)?;
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
            status: "pending".to_string(),
            priority,
            channel: input.channel,
            template_id: input.template_id,
            data: input.data,
            created_at: now,
            updated_at: now,
            sent_at: None,
            read_at: None,
            expires_at: input.expires_at,
            send_at,
            attempts: 0,
            delivery_id: String::new(),
            deliveries: Vec::new(),
            next_attempt_at: None,
            delivered_at: None,
            version: 0,
        };
        if immediate {
            self.send(notification, now, fx);
        } else {
            self.emit(Event::NotificationPut { notification }, fx);
        }
        Ok(Reply::Notification(self.notifications[&id].clone()))
    }

    /// A notification caused by an event (payment, stock, basket), delivered in-app at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn notify(
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
            delivery_id: String::new(),
            deliveries: Vec::new(),
            next_attempt_at: None,
            delivered_at: None,
            version: 0,
        };
        self.emit(Event::NotificationPut { notification }, fx);
    }

    pub(super) fn notification(&self, id: &str) -> Result<Notification, EngineError> {
        self.notifications.get(id).cloned().ok_or_else(|| notification_not_found(id))
    }

    pub(super) fn put_notification(&mut self, n: Notification, fx: &mut Effects) -> Result<Reply, EngineError> {
        let id = n.id.clone();
        self.emit(Event::NotificationPut { notification: n }, fx);
        Ok(Reply::Notification(self.notifications[&id].clone()))
    }

    pub(super) fn update_notification(
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

    pub(super) fn delete_notification(&mut self, id: &str, fx: &mut Effects) -> Result<Reply, EngineError> {
        let Some(old) = self.notifications.get(id) else {
            return Ok(Reply::Deleted { existed: false });
        };
        let user_id = old.user_id.clone();
        self.emit(Event::NotificationDeleted { id: id.to_string(), user_id, version: 0 }, fx);
        Ok(Reply::Deleted { existed: true })
    }

    pub(super) fn send_notification(&mut self, id: &str, retry: bool, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let n = self.notification(id)?;
        if retry && n.status != "failed" {
            return Err(EngineError::conflict("Notification is not in failed status"));
        }
        if n.expires_at.is_some_and(|at| at <= now) {
            return Err(EngineError::new(ErrorKind::Expired, format!("notification {id} has expired")));
        }
        let id = self.send(n, now, fx);
        Ok(Reply::Notification(self.notifications[&id].clone()))
    }

    /// Sends `n`: `sent` now and, on a channel Kassa delivers, a new delivery whose first attempt is due
    /// at once (released with the record, once it is durable). Answers its id.
    pub(super) fn send(&mut self, mut n: Notification, now: Micros, fx: &mut Effects) -> String {
        n.status = "sent".to_string();
        n.sent_at = Some(now);
        n.send_at = None;
        n.attempts += 1;
        n.updated_at = now;
        let delivered = self.delivery_policy(&n.channel).is_some();
        if delivered {
            n.delivery_id = format!("{}-{}", n.id, n.attempts);
            n.next_attempt_at = Some(now);
            n.delivered_at = None;
        }
        let id = n.id.clone();
        self.emit(Event::NotificationPut { notification: n }, fx);
        if delivered {
            self.hand_out(&id, now, fx);
        }
        id
    }

    fn delivery_policy(&self, channel: &str) -> Option<&DeliveryPolicy> {
        self.cfg.delivered_channels.iter().find(|p| p.channel == channel)
    }

    /// Asks for the due attempt of `id`'s delivery, and makes it due again `delivery_redrive_after` from
    /// now in memory only: an answer replaces that, a crash forgets it (recovery makes the attempt again).
    fn hand_out(&mut self, id: &str, now: Micros, fx: &mut Effects) {
        let Some(n) = self.notifications.get(id) else { return };
        let call = DeliveryCall { notification: n.clone(), delivery_id: n.delivery_id.clone(), attempt: n.attempts_of_delivery() + 1 };
        fx.deliveries.push(call);
        self.delivery_due.set(id, Some(now.saturating_add(self.cfg.delivery_redrive_after)));
    }

    /// Hands out the delivery attempts due by `now`, at most `STEP_WORK_MAX` per call.
    pub(super) fn hand_out_due(&mut self, now: Micros, fx: &mut Effects) {
        for id in self.delivery_due.due(now, STEP_WORK_MAX) {
            self.hand_out(&id, now, fx);
        }
    }

    /// Records what became of one delivery attempt: delivered, due again after the backoff, or `failed`
    /// once the channel's attempts are spent or the receiver refused it for good.
    pub(super) fn delivery_outcome(
        &mut self,
        id: &str,
        delivery_id: &str,
        attempt: u32,
        result: DeliveryResult,
        now: Micros,
        fx: &mut Effects,
    ) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        // A late answer for an earlier delivery, or a second answer to a re-driven attempt, changes nothing.
        if n.status != "sent" || n.delivery_id != delivery_id || attempt != n.attempts_of_delivery() + 1 {
            return Ok(Reply::Notification(n));
        }
        let (delivered, error, retryable) = match result {
            DeliveryResult::Delivered => (true, String::new(), false),
            DeliveryResult::Failed { error, retryable } => (false, clipped(error, limits::TEXT_SHORT_MAX), retryable),
        };
        n.deliveries.push(DeliveryAttempt { delivery_id: delivery_id.to_string(), attempt, at: now, delivered, error });
        if n.deliveries.len() > limits::DELIVERY_ATTEMPTS_KEPT {
            n.deliveries.remove(0);
        }
        n.next_attempt_at = None;
        let again = self.delivery_policy(&n.channel).filter(|p| retryable && attempt < p.max_attempts).map(|p| p.backoff);
        if delivered {
            n.status = "delivered".to_string();
            n.delivered_at = Some(now);
        } else if let Some(backoff) = again {
            n.next_attempt_at = Some(now.saturating_add(self.backoff_after(backoff, attempt)));
        } else {
            n.status = "failed".to_string();
        }
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    /// The wait after failed attempt `attempt`: `backoff` doubled per attempt after the first, plus up to a
    /// quarter of that at random so that receivers coming back are not hit by every retry at once.
    fn backoff_after(&mut self, backoff: std::time::Duration, attempt: u32) -> Micros {
        let base = i64::try_from(backoff.as_micros()).unwrap_or(i64::MAX).max(0);
        let wait = base.saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let jitter = (self.rng.next_u64() % (wait as u64 / 4 + 1)) as i64;
        wait.saturating_add(jitter)
    }

    pub(super) fn mark_read(&mut self, id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        n.status = "read".to_string();
        n.read_at = Some(now);
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    /// Marks every unread notification of the user read; answers how many that is. At most
    /// `STEP_WORK_MAX` are marked in the command itself, the rest on the following ticks.
    pub(super) fn mark_all_read(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let count = self.unread_of(user_id).count() as u64;
        if self.mark_read_step(user_id, now, fx) {
            self.read_all_backlog.push_back((user_id.to_string(), now));
        }
        Ok(Reply::Count(count))
    }

    fn unread_of<'a>(&'a self, user_id: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let from = (user_id.to_string(), String::new());
        self.unread.range(from..).take_while(move |(user, _)| user == user_id).map(|(_, id)| id)
    }

    /// Marks up to `STEP_WORK_MAX` of the user's unread notifications read; true if some are left.
    fn mark_read_step(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> bool {
        let ids: Vec<String> = self.unread_of(user_id).take(STEP_WORK_MAX + 1).cloned().collect();
        for id in ids.iter().take(STEP_WORK_MAX) {
            let mut n = self.notifications[id].clone();
            n.status = "read".to_string();
            n.read_at = Some(now);
            n.updated_at = now;
            self.emit(Event::NotificationPut { notification: n }, fx);
        }
        ids.len() > STEP_WORK_MAX
    }

    /// Deletes the notifications expired by now; answers how many that is. At most `STEP_WORK_MAX` are
    /// deleted in the command itself, the rest on the following ticks.
    pub(super) fn cleanup_notifications(&mut self, now: Micros, fx: &mut Effects) -> u64 {
        let count = self.notification_expiry.iter().take_while(|(at, _)| *at <= now).count() as u64;
        if self.cleanup_step(now, fx) {
            self.cleanup_backlog = Some(self.cleanup_backlog.map_or(now, |at| at.max(now)));
        }
        count
    }

    /// Deletes up to `STEP_WORK_MAX` notifications expired by `before`; true if some are left.
    fn cleanup_step(&mut self, before: Micros, fx: &mut Effects) -> bool {
        let due: Vec<String> =
            self.notification_expiry.iter().take_while(|(at, _)| *at <= before).take(STEP_WORK_MAX + 1).map(|(_, id)| id.clone()).collect();
        for id in due.iter().take(STEP_WORK_MAX) {
            let user_id = self.notifications[id].user_id.clone();
            self.emit(Event::NotificationDeleted { id: id.clone(), user_id, version: 0 }, fx);
        }
        due.len() > STEP_WORK_MAX
    }

    /// One tick's share of the read-all and cleanup work left over by commands.
    pub(super) fn finish_backlogs(&mut self, fx: &mut Effects) {
        if let Some((user_id, at)) = self.read_all_backlog.pop_front()
            && self.mark_read_step(&user_id, at, fx)
        {
            self.read_all_backlog.push_front((user_id, at));
        }
        if let Some(before) = self.cleanup_backlog.take()
            && self.cleanup_step(before, fx)
        {
            self.cleanup_backlog = Some(before);
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn clipped(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

pub(crate) fn notification_not_found(id: &str) -> EngineError {
    EngineError::not_found(format!("notification not found: {id}"))
        .because(Refusal::NotificationNotFound { notification_id: id.to_string() })
}
