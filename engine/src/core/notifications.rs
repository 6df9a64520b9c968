//! Notification commands, and the notifications the engine itself raises (payments, stock, baskets).

use super::validate::{check_text, check_user, validate_notification};
use super::*;

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
            status: if immediate { "sent".to_string() } else { "pending".to_string() },
            priority,
            channel: input.channel,
            template_id: input.template_id,
            data: input.data,
            created_at: now,
            updated_at: now,
            sent_at: immediate.then_some(now),
            read_at: None,
            expires_at: input.expires_at,
            send_at,
            attempts: u32::from(immediate),
            version: 0,
        };
        self.emit(Event::NotificationPut { notification }, fx);
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
        let mut n = self.notification(id)?;
        if retry && n.status != "failed" {
            return Err(EngineError::conflict("Notification is not in failed status"));
        }
        if n.expires_at.is_some_and(|at| at <= now) {
            return Err(EngineError::new(ErrorKind::Expired, format!("notification {id} has expired")));
        }
        n.status = "sent".to_string();
        n.sent_at = Some(now);
        n.send_at = None;
        n.attempts += 1;
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    pub(super) fn mark_read(&mut self, id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        let mut n = self.notification(id)?;
        n.status = "read".to_string();
        n.read_at = Some(now);
        n.updated_at = now;
        self.put_notification(n, fx)
    }

    pub(super) fn mark_all_read(&mut self, user_id: &str, now: Micros, fx: &mut Effects) -> Result<Reply, EngineError> {
        check_user(user_id)?;
        let mut unread: Vec<Notification> =
            self.notifications.values().filter(|n| n.user_id == user_id && n.read_at.is_none()).cloned().collect();
        unread.sort_by(|a, b| a.id.cmp(&b.id));
        let count = unread.len() as u64;
        for mut n in unread {
            n.status = "read".to_string();
            n.read_at = Some(now);
            n.updated_at = now;
            self.emit(Event::NotificationPut { notification: n }, fx);
        }
        Ok(Reply::Count(count))
    }

    pub(super) fn cleanup_notifications(&mut self, now: Micros, fx: &mut Effects) -> u64 {
        let mut expired: Vec<(String, String)> = self
            .notifications
            .values()
            .filter(|n| n.expires_at.is_some_and(|at| at <= now))
            .map(|n| (n.id.clone(), n.user_id.clone()))
            .collect();
        expired.sort();
        let count = expired.len() as u64;
        for (id, user_id) in expired {
            self.emit(Event::NotificationDeleted { id, user_id, version: 0 }, fx);
        }
        count
    }
}

pub(crate) fn notification_not_found(id: &str) -> EngineError {
    EngineError::not_found(format!("notification not found: {id}"))
        .because(Refusal::NotificationNotFound { notification_id: id.to_string() })
}
