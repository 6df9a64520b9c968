//! The `email` channel: each attempt is one message through the configured SMTP server, to the address
//! in the notification's `data.email` (or its `user_id`, when that is an address).

use std::time::Duration;

use kassa_engine::{DeliveryCall, DeliveryResult, Notification};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::SmtpConfig;
use crate::sender::Sender;

pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    pub fn new(cfg: &SmtpConfig) -> Result<SmtpSender, String> {
        let from = cfg.from.parse::<Mailbox>().map_err(|e| format!("notifications.smtp.from: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
            .port(cfg.port)
            .timeout(Some(Duration::from_millis(cfg.timeout_ms.max(1))));
        if cfg.starttls {
            let mut tls = TlsParameters::builder(cfg.host.clone());
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path).map_err(|e| format!("notifications.smtp.ca_file {}: {e}", path.display()))?;
                let ca = Certificate::from_pem(&pem).map_err(|e| format!("notifications.smtp.ca_file {}: {e}", path.display()))?;
                tls = tls.add_root_certificate(ca);
            }
            let tls = tls.build().map_err(|e| format!("notifications.smtp: {e}"))?;
            builder = builder.tls(Tls::Required(tls));
        }
        if !cfg.username.is_empty() {
            builder = builder.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
        }
        Ok(SmtpSender { transport: builder.build(), from })
    }

    /// The message for one attempt; the same Message-ID for every attempt of a delivery, so that a mail
    /// system can tell a repeat.
    fn message(&self, call: &DeliveryCall) -> Result<Message, DeliveryResult> {
        let refused = |error: String| DeliveryResult::Failed { error, retryable: false };
        let to = recipient(&call.notification).ok_or_else(|| refused("no recipient: the notification's data has no email".into()))?;
        let domain = self.from.email.domain().to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(call.notification.title.clone())
            .message_id(Some(format!("<{}@{domain}>", call.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(call.notification.message.clone())
            .map_err(|e| refused(format!("the message cannot be built: {e}")))
    }
}

fn recipient(n: &Notification) -> Option<Mailbox> {
    let email = n.data.iter().find(|(k, _)| k == "email").map(|(_, v)| v.as_str());
    email.unwrap_or(&n.user_id).parse().ok()
}

#[async_trait::async_trait]
impl Sender for SmtpSender {
    fn channel(&self) -> &str {
        "email"
    }

    async fn deliver(&self, call: &DeliveryCall) -> DeliveryResult {
        let message = match self.message(call) {
            Ok(message) => message,
            Err(refused) => return refused,
        };
        match self.transport.send(message).await {
            Ok(_) => DeliveryResult::Delivered,
            // A permanent (5xx) answer will not change; anything else (4xx, a timeout, no connection) may.
            Err(e) => DeliveryResult::Failed { error: format!("SMTP: {e}"), retryable: !e.is_permanent() },
        }
    }
}
