//! `simulated`: a deterministic provider for development and tests. It follows Stripe's test tokens
//! (`tok_visa` is charged, `tok_chargeDeclined` declined with `card_declined`, …), keeps an idempotency
//! log so that a repeated key gets the first answer, and can be told to be slow to charge or to decline
//! a share of unknown tokens.

use std::collections::HashMap;
use std::time::Duration;

use kassa_engine::{ChargeCall, RefundCall};
use parking_lot::Mutex;

use crate::config::SimulatedConfig;
use crate::provider::{Charge, PaymentProvider, ProviderError};

pub(crate) const NAME: &str = "simulated";
const CHARGE_PREFIX: &str = "pi_sim_";

/// What the log holds for one idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Charged(Charge),
    Declined { code: String, message: String },
    Voided,
    Refunded(String),
}

pub struct SimulatedProvider {
    cfg: SimulatedConfig,
    log: Mutex<HashMap<String, Entry>>,
}

impl SimulatedProvider {
    pub fn new(cfg: SimulatedConfig) -> SimulatedProvider {
        SimulatedProvider { cfg, log: Mutex::new(HashMap::new()) }
    }

    /// How many charges were captured (each idempotency key counts once).
    pub fn captures(&self) -> usize {
        self.log.lock().values().filter(|e| matches!(e, Entry::Charged(_))).count()
    }

    /// How many refunds were made (each idempotency key counts once).
    pub fn refunds(&self) -> usize {
        self.log.lock().values().filter(|e| matches!(e, Entry::Refunded(_))).count()
    }

    fn decide(&self, call: &ChargeCall) -> Entry {
        let declined = |code: &str, message: &str| Entry::Declined { code: code.into(), message: message.into() };
        match call.token.as_str() {
            "tok_chargeDeclined" => declined("card_declined", "Your card was declined."),
            "tok_chargeDeclinedInsufficientFunds" => declined("insufficient_funds", "Your card has insufficient funds."),
            "tok_chargeDeclinedExpiredCard" => declined("expired_card", "Your card has expired."),
            "tok_chargeDeclinedIncorrectCvc" => declined("incorrect_cvc", "Your card's security code is incorrect."),
            "tok_chargeDeclinedFraudulent" => declined("fraudulent", "Your card was declined."),
            "tok_chargeDeclinedProcessingError" => declined("processing_error", "An error occurred while processing your card."),
            "tok_visa" | "tok_visa_debit" | "tok_mastercard" | "tok_mastercard_debit" | "tok_amex" | "tok_discover" => self.charged(call),
            _ if unit_interval(&call.idempotency_key) < self.cfg.decline_rate => {
                declined(&self.cfg.decline_code, "Your card was declined.")
            }
            _ => self.charged(call),
        }
    }

    fn charged(&self, call: &ChargeCall) -> Entry {
        Entry::Charged(Charge { id: format!("{CHARGE_PREFIX}{:016x}", fnv1a(call.idempotency_key.as_bytes())) })
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn charge(&self, call: &ChargeCall) -> Result<Charge, ProviderError> {
        tokio::time::sleep(Duration::from_millis(self.cfg.latency_ms)).await;
        let entry = self.log.lock().entry(call.idempotency_key.clone()).or_insert_with(|| self.decide(call)).clone();
        match entry {
            Entry::Charged(charge) => Ok(charge),
            Entry::Declined { code, message } => Err(ProviderError::Declined { code, message }),
            Entry::Voided => Err(ProviderError::Declined { code: "charge_voided".into(), message: "This charge was cancelled.".into() }),
            Entry::Refunded(_) => {
                Err(ProviderError::Declined { code: "invalid_request".into(), message: "That key named a refund.".into() })
            }
        }
    }

    async fn refund(&self, call: &RefundCall) -> Result<String, ProviderError> {
        let mut log = self.log.lock();
        // Its charge ids say they are its own, so a charge made before a restart (the log is in memory)
        // can still be refunded.
        let ours = call.charge_id.starts_with(CHARGE_PREFIX);
        let entry = log.entry(call.idempotency_key.clone()).or_insert_with(|| {
            if ours {
                Entry::Refunded(format!("re_sim_{:016x}", fnv1a(call.idempotency_key.as_bytes())))
            } else {
                Entry::Declined { code: "charge_not_found".into(), message: format!("No such charge: {}", call.charge_id) }
            }
        });
        match entry {
            Entry::Refunded(id) => Ok(id.clone()),
            Entry::Declined { code, message } => Err(ProviderError::Declined { code: code.clone(), message: message.clone() }),
            Entry::Charged(_) | Entry::Voided => {
                Err(ProviderError::Declined { code: "invalid_request".into(), message: "That key named a charge.".into() })
            }
        }
    }

    async fn void(&self, call: &ChargeCall) -> Result<Option<Charge>, ProviderError> {
        let mut log = self.log.lock();
        if let Some(Entry::Charged(charge)) = log.get(&call.idempotency_key) {
            return Ok(Some(charge.clone()));
        }
        log.insert(call.idempotency_key.clone(), Entry::Voided);
        Ok(None)
    }
}

/// A number in [0, 1) fixed by `key`.
fn unit_interval(key: &str) -> f64 {
    (fnv1a(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

fn fnv1a(bytes: &[u8]) -> u64 {
    kassa_engine::wire::fnv1a(&[bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(token: &str, key: &str) -> ChargeCall {
        ChargeCall {
            payment_id: "p1".into(),
            attempt: 1,
            provider: NAME.into(),
            user_id: "u1".into(),
            amount: 1999,
            currency: "USD".into(),
            token: token.into(),
            idempotency_key: key.into(),
        }
    }

    #[tokio::test]
    async fn test_tokens_decide_and_a_repeated_key_gets_the_first_answer() {
        let p = SimulatedProvider::new(SimulatedConfig::default());
        let charged = p.charge(&call("tok_visa", "k1")).await.unwrap();
        assert_eq!(p.charge(&call("tok_visa", "k1")).await.unwrap(), charged);
        assert_eq!(p.captures(), 1, "one capture per key");
        let declined = p.charge(&call("tok_chargeDeclined", "k2")).await.unwrap_err();
        assert!(matches!(declined, ProviderError::Declined { ref code, .. } if code == "card_declined"), "{declined:?}");
        let funds = p.charge(&call("tok_chargeDeclinedInsufficientFunds", "k3")).await.unwrap_err();
        assert!(matches!(funds, ProviderError::Declined { ref code, .. } if code == "insufficient_funds"));
        assert_eq!(p.captures(), 1);
    }

    #[tokio::test]
    async fn its_own_charges_are_refunded_once_per_key_even_after_a_restart() {
        let before = SimulatedProvider::new(SimulatedConfig::default());
        let charge = before.charge(&call("tok_visa", "k1")).await.unwrap();
        let restarted = SimulatedProvider::new(SimulatedConfig::default());
        let refund = |key: &str, charge_id: &str| RefundCall {
            payment_id: "p1".into(),
            refund_id: "r1".into(),
            provider: NAME.into(),
            charge_id: charge_id.into(),
            amount: 500,
            currency: "USD".into(),
            reason: "damaged".into(),
            idempotency_key: key.into(),
        };
        let first = restarted.refund(&refund("rk1", &charge.id)).await.unwrap();
        assert_eq!(restarted.refund(&refund("rk1", &charge.id)).await.unwrap(), first);
        assert_eq!(restarted.refunds(), 1);
        assert!(restarted.refund(&refund("rk2", "ch_other")).await.is_err(), "not its charge");
    }

    #[tokio::test]
    async fn a_voided_key_is_never_charged_later() {
        let p = SimulatedProvider::new(SimulatedConfig::default());
        assert_eq!(p.void(&call("tok_visa", "k1")).await.unwrap(), None);
        assert!(p.charge(&call("tok_visa", "k1")).await.is_err());
        assert_eq!(p.captures(), 0);
        // A charge that went through is reported, not voided.
        let charged = p.charge(&call("tok_visa", "k2")).await.unwrap();
        assert_eq!(p.void(&call("tok_visa", "k2")).await.unwrap(), Some(charged));
    }

    #[tokio::test]
    async fn the_decline_rate_applies_to_unknown_tokens_by_key() {
        let cfg = SimulatedConfig { decline_rate: 0.5, decline_code: "do_not_honor".into(), ..SimulatedConfig::default() };
        let p = SimulatedProvider::new(cfg);
        let mut declined = 0;
        for i in 0..400 {
            if p.charge(&call("tok_unknown", &format!("k{i}"))).await.is_err() {
                declined += 1;
            }
        }
        assert!((120..280).contains(&declined), "about half of 400 declined, got {declined}");
        let all = SimulatedProvider::new(SimulatedConfig { decline_rate: 1.0, ..SimulatedConfig::default() });
        assert!(all.charge(&call("tok_unknown", "x")).await.is_err());
        assert!(all.charge(&call("tok_visa", "y")).await.is_ok(), "known tokens keep their meaning");
    }
}
