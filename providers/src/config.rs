//! `[payments]`: how provider calls are made and which providers Kassa charges through.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// How long one provider call may take before it counts as failed (and is retried).
    pub timeout_ms: u64,
    /// Calls per charge before Kassa gives up on the provider and voids the charge (same key each time).
    pub attempts: u32,
    /// Wait before the second call; doubles for each later one.
    pub backoff_ms: u64,
    /// Most provider calls in flight at once; more wait for a free slot.
    pub concurrency: usize,
    pub simulated: SimulatedConfig,
    pub stripe: StripeConfig,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            timeout_ms: 10_000,
            attempts: 3,
            backoff_ms: 200,
            concurrency: 256,
            simulated: SimulatedConfig::default(),
            stripe: StripeConfig::default(),
        }
    }
}

impl PaymentsConfig {
    /// The providers Kassa charges through (a payment for any other provider records the `provider_id`
    /// its client gives, as the old system did).
    pub fn provider_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.simulated.enabled {
            names.push(crate::simulated::NAME.to_string());
        }
        if self.stripe.enabled {
            names.push(crate::stripe::NAME.to_string());
        }
        names
    }

    /// Secrets from the environment (`KASSA_STRIPE_API_KEY`, `KASSA_STRIPE_WEBHOOK_SECRET`) where the
    /// file gives none.
    pub fn apply_env(&mut self) {
        if self.stripe.api_key.is_empty()
            && let Ok(key) = std::env::var("KASSA_STRIPE_API_KEY")
        {
            self.stripe.api_key = key;
        }
        if self.stripe.webhook_secret.is_empty()
            && let Ok(secret) = std::env::var("KASSA_STRIPE_WEBHOOK_SECRET")
        {
            self.stripe.webhook_secret = secret;
        }
    }
}

/// `[payments.stripe]`: Stripe's HTTP API (or anything that speaks it, such as stripe-mock).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// Off by default: payments naming `stripe` then keep the old behaviour (nothing is called).
    pub enabled: bool,
    /// The secret key (`sk_…`); or the environment's `KASSA_STRIPE_API_KEY`.
    pub api_key: String,
    pub base_url: String,
    /// The webhook endpoint's signing secret (`whsec_…`); or the environment's
    /// `KASSA_STRIPE_WEBHOOK_SECRET`. Without it `POST /webhooks/stripe` believes nothing.
    pub webhook_secret: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig { enabled: false, api_key: String::new(), base_url: "https://api.stripe.com".into(), webhook_secret: String::new() }
    }
}

/// `[payments.simulated]`: the deterministic provider for development and tests.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedConfig {
    pub enabled: bool,
    /// How long every charge takes (a void is immediate).
    pub latency_ms: u64,
    /// Share (0 to 1) of charges with a token the simulation does not know that are declined, chosen
    /// from the idempotency key, so a repeated call is decided the same way.
    pub decline_rate: f64,
    /// The code those declines carry.
    pub decline_code: String,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig { enabled: true, latency_ms: 0, decline_rate: 0.0, decline_code: "card_declined".into() }
    }
}
