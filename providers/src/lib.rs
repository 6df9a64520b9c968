//! Kassa's payment providers. The engine never calls a provider from a shard: processing a payment
//! through a provider named here puts it in its `Charging` stage, and the shard releases a
//! [`ChargeCall`](kassa_engine::ChargeCall) into the channel made by [`channel`] once that stage is
//! durable. [`start`] runs the calls on a thread and runtime of their own: each provider behind the one
//! [`PaymentProvider`] trait, with a timeout, retries under the same idempotency key, a void when the
//! provider cannot be reached, and the outcome sent back to the engine as a command.
//!
//! Shipped: the deterministic [`SimulatedProvider`] (`simulated`), which follows Stripe's test tokens, and
//! [`StripeProvider`] (`stripe`), which speaks Stripe's HTTP API.

mod config;
mod metrics;
mod provider;
mod runner;
mod simulated;
mod stripe;
mod stripe_webhook;

pub use config::{PaymentsConfig, SimulatedConfig, StripeConfig};
pub use metrics::{ProviderCollector, ProviderMetrics};
pub use provider::{Charge, PaymentProvider, ProviderError};
pub use runner::{CallIntake, Payments, channel, start};
pub use simulated::SimulatedProvider;
pub use stripe::StripeProvider;
