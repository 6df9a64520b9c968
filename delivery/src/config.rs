//! `[notifications]`: which channels Kassa delivers and how hard it tries.

use std::path::PathBuf;
use std::time::Duration;

use kassa_engine::DeliveryPolicy;
use serde::{Deserialize, Serialize};

/// Most attempts one delivery may be given (the engine keeps a record of each).
const ATTEMPTS_MAX: u32 = 32;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Most delivery attempts in flight at once, over every channel; more wait for a free slot.
    pub concurrency: usize,
    /// `webhook` notifications: POSTed, signed, to one endpoint.
    pub webhook: HttpChannelConfig,
    /// `sms` notifications: POSTed to an SMS gateway's endpoint.
    pub sms: HttpChannelConfig,
    /// `push` notifications: POSTed to a push service's endpoint.
    pub push: HttpChannelConfig,
    /// `email` notifications, sent to the notification's `data.email`.
    pub smtp: SmtpConfig,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            concurrency: 64,
            webhook: HttpChannelConfig::default(),
            sms: HttpChannelConfig::default(),
            push: HttpChannelConfig::default(),
            smtp: SmtpConfig::default(),
        }
    }
}

/// An HTTP endpoint a channel's notifications are POSTed to; the channel is delivered when `url` is set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpChannelConfig {
    pub url: String,
    /// Signs each body (`X-Kassa-Signature`); required for `webhook`.
    pub secret: String,
    /// Attempts per delivery before the notification is left `failed`.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one, plus up to a quarter at random.
    pub backoff_ms: u64,
    /// How long one attempt may take.
    pub timeout_ms: u64,
}

impl Default for HttpChannelConfig {
    fn default() -> Self {
        HttpChannelConfig { url: String::new(), secret: String::new(), max_attempts: 5, backoff_ms: 500, timeout_ms: 10_000 }
    }
}

/// The SMTP server `email` notifications go through; the channel is delivered when `host` is set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// The sender's address (`Shop <shop@example.com>` or a bare address).
    pub from: String,
    /// Upgrade the connection with STARTTLS before anything is sent, and refuse a server that cannot.
    pub starttls: bool,
    pub username: String,
    /// Or the environment's `KASSA_SMTP_PASSWORD`.
    pub password: String,
    /// A PEM file of certificates to trust besides the usual roots (a private mail relay's CA).
    pub ca_file: Option<PathBuf>,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub timeout_ms: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            from: String::new(),
            starttls: true,
            username: String::new(),
            password: String::new(),
            ca_file: None,
            max_attempts: 5,
            backoff_ms: 500,
            timeout_ms: 30_000,
        }
    }
}

impl HttpChannelConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

impl SmtpConfig {
    pub fn enabled(&self) -> bool {
        !self.host.is_empty()
    }
}

impl NotificationsConfig {
    /// The HTTP channels, by the notification channel they deliver.
    pub fn http_channels(&self) -> [(&'static str, &HttpChannelConfig); 3] {
        [("webhook", &self.webhook), ("sms", &self.sms), ("push", &self.push)]
    }

    /// How the engine tries each delivered channel.
    pub fn policies(&self) -> Vec<DeliveryPolicy> {
        let policy = |channel: &str, max_attempts: u32, backoff_ms: u64| DeliveryPolicy {
            channel: channel.to_string(),
            max_attempts,
            backoff: Duration::from_millis(backoff_ms),
        };
        let mut policies: Vec<DeliveryPolicy> = self
            .http_channels()
            .into_iter()
            .filter(|(_, c)| c.enabled())
            .map(|(name, c)| policy(name, c.max_attempts, c.backoff_ms))
            .collect();
        if self.smtp.enabled() {
            policies.push(policy("email", self.smtp.max_attempts, self.smtp.backoff_ms));
        }
        policies
    }

    /// Longest one attempt may take on any channel: an attempt unanswered for longer than this (and then
    /// some) is made again.
    pub fn longest_attempt(&self) -> Duration {
        let http = self.http_channels().into_iter().filter(|(_, c)| c.enabled()).map(|(_, c)| c.timeout_ms);
        let smtp = self.smtp.enabled().then_some(self.smtp.timeout_ms);
        Duration::from_millis(http.chain(smtp).max().unwrap_or(0))
    }

    /// Secrets from the environment (`KASSA_WEBHOOK_SECRET`, `KASSA_SMTP_PASSWORD`) where the file gives none.
    pub fn apply_env(&mut self) {
        if self.webhook.secret.is_empty()
            && let Ok(secret) = std::env::var("KASSA_WEBHOOK_SECRET")
        {
            self.webhook.secret = secret;
        }
        if self.smtp.password.is_empty()
            && let Ok(password) = std::env::var("KASSA_SMTP_PASSWORD")
        {
            self.smtp.password = password;
        }
    }

    /// Refuses settings no delivery could work with.
    pub fn validate(&self) -> Result<(), String> {
        for (name, c) in self.http_channels() {
            if !c.enabled() {
                continue;
            }
            let url = reqwest::Url::parse(&c.url).map_err(|e| format!("notifications.{name}.url: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("notifications.{name}.url must be http or https"));
            }
            if name == "webhook" && c.secret.is_empty() {
                return Err("notifications.webhook.secret is required: every delivery is signed with it".into());
            }
            check_tries(name, c.max_attempts, c.timeout_ms)?;
        }
        if self.smtp.enabled() {
            if self.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!("notifications.smtp.from is not an email address: {:?}", self.smtp.from));
            }
            check_tries("smtp", self.smtp.max_attempts, self.smtp.timeout_ms)?;
        }
        Ok(())
    }
}

fn check_tries(name: &str, max_attempts: u32, timeout_ms: u64) -> Result<(), String> {
    if !(1..=ATTEMPTS_MAX).contains(&max_attempts) {
        return Err(format!("notifications.{name}.max_attempts must be 1..={ATTEMPTS_MAX}, not {max_attempts}"));
    }
    if timeout_ms == 0 {
        return Err(format!("notifications.{name}.timeout_ms must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str, secret: &str) -> NotificationsConfig {
        let mut cfg = NotificationsConfig::default();
        cfg.webhook.url = url.into();
        cfg.webhook.secret = secret.into();
        cfg
    }

    #[test]
    fn only_configured_channels_are_delivered_each_with_its_tries() {
        assert!(NotificationsConfig::default().policies().is_empty(), "nothing is delivered unless configured");
        let mut cfg = webhook("https://hooks.example.com/kassa", "s");
        cfg.smtp.host = "mail.example.com".into();
        cfg.smtp.from = "shop@example.com".into();
        cfg.smtp.max_attempts = 2;
        cfg.validate().unwrap();
        let policies: Vec<(String, u32, u64)> =
            cfg.policies().into_iter().map(|p| (p.channel, p.max_attempts, p.backoff.as_millis() as u64)).collect();
        assert_eq!(policies, vec![("webhook".into(), 5, 500), ("email".into(), 2, 500)], "defaults: 5 attempts, 500 ms first backoff");
        assert_eq!(cfg.longest_attempt(), Duration::from_secs(30));
    }

    #[test]
    fn settings_no_delivery_could_work_with_are_refused() {
        assert!(webhook("https://h.example.com", "").validate().unwrap_err().contains("secret is required"));
        assert!(webhook("not a url", "s").validate().unwrap_err().contains("notifications.webhook.url"));
        assert!(webhook("ftp://h.example.com", "s").validate().unwrap_err().contains("http or https"));
        let mut cfg = webhook("https://h.example.com", "s");
        cfg.webhook.max_attempts = 0;
        assert!(cfg.validate().unwrap_err().contains("max_attempts must be 1..=32"));
        let mut cfg = NotificationsConfig::default();
        cfg.smtp.host = "mail.example.com".into();
        cfg.smtp.from = "nobody".into();
        assert!(cfg.validate().unwrap_err().contains("notifications.smtp.from"));
        let mut cfg = NotificationsConfig::default();
        cfg.sms.url = "https://sms.example.com/send".into();
        cfg.validate().expect("an sms endpoint needs no secret");
    }
}
