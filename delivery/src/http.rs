//! The HTTP channels (`webhook`, `sms`, `push`): each attempt is a POST of the notification's JSON, signed
//! when the endpoint has a secret.

use hmac::{Hmac, Mac};
use kassa_engine::{DeliveryCall, DeliveryResult};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use sha2::Sha256;

use crate::config::HttpChannelConfig;
use crate::sender::{Render, Sender};

/// The `X-Kassa-Signature` of `body` under `secret`: `sha256=` and the hex of its HMAC-SHA256.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        out.push(char::from_digit(u32::from(b & 0xf), 16).expect("a nibble"));
    }
    out
}

pub struct HttpSender {
    channel: &'static str,
    url: reqwest::Url,
    secret: Vec<u8>,
    client: reqwest::Client,
    render: Render,
}

impl HttpSender {
    pub fn new(channel: &'static str, cfg: &HttpChannelConfig, render: Render) -> Result<HttpSender, String> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("notifications.{channel}.url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(cfg.timeout_ms.max(1)))
            // A receiver that moved must be configured anew: a redirect is not followed with a signed body.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kassa/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notifications.{channel}: {e}"))?;
        Ok(HttpSender { channel, url, secret: cfg.secret.as_bytes().to_vec(), client, render })
    }
}

#[async_trait::async_trait]
impl Sender for HttpSender {
    fn channel(&self) -> &str {
        self.channel
    }

    async fn deliver(&self, call: &DeliveryCall) -> DeliveryResult {
        let body = (self.render)(&call.notification);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("X-Kassa-Delivery", &call.delivery_id)
            .header("X-Kassa-Attempt", call.attempt.to_string());
        if !self.secret.is_empty() {
            request = request.header("X-Kassa-Signature", signature(&self.secret, &body));
        }
        match request.body(body).send().await {
            Ok(answer) => outcome_of(answer.status()),
            Err(e) if e.is_timeout() => DeliveryResult::Failed { error: "timed out".into(), retryable: true },
            Err(e) => DeliveryResult::Failed { error: format!("cannot reach the receiver: {}", root_cause(&e)), retryable: true },
        }
    }
}

/// A receiver's answer: 2xx took it; 408, 429 and 5xx may take it later; any other status refused it.
fn outcome_of(status: StatusCode) -> DeliveryResult {
    if status.is_success() {
        return DeliveryResult::Delivered;
    }
    let retryable = status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
    DeliveryResult::Failed { error: format!("HTTP {}", status.as_u16()), retryable }
}

/// The innermost error's text (reqwest's own says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_statuses_decide_whether_to_try_again() {
        assert_eq!(outcome_of(StatusCode::NO_CONTENT), DeliveryResult::Delivered);
        for (status, retryable) in [(500, true), (503, true), (429, true), (408, true), (400, false), (410, false), (301, false)] {
            let DeliveryResult::Failed { error, retryable: r } = outcome_of(StatusCode::from_u16(status).unwrap()) else { panic!() };
            assert_eq!((error, r), (format!("HTTP {status}"), retryable));
        }
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
