//! The provider runner: takes the shards' charge calls off their channel and makes them on a thread and
//! runtime of its own, so that a slow or absent provider never holds a shard. Each call gets a timeout
//! and a few tries under its one idempotency key; when the provider cannot be reached at all, the
//! charge is voided so that the payment can fail with nothing taken. The outcome goes back to the
//! engine as a command, retried while the engine is busy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_engine::{CallOutcome, ChargeCall, Engine, ProviderCall, ProviderCallSender, ProviderNotice, RefundCall, WebhookRefusal, cmd};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::PaymentsConfig;
use crate::metrics::ProviderMetrics;
use crate::provider::{PaymentProvider, ProviderError};
use crate::simulated::SimulatedProvider;
use crate::stripe::StripeProvider;

/// Calls waiting for the runner; a shard that finds it full leaves the payment to be re-driven.
const CHANNEL_CAPACITY: usize = 4096;

/// The receiving side of the shards' provider calls, handed to [`start`].
pub struct CallIntake(mpsc::Receiver<ProviderCall>);

/// The channel the engine releases provider calls into (`EngineConfig::provider_calls`) and its intake.
pub fn channel() -> (ProviderCallSender, CallIntake) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (tx, CallIntake(rx))
}

/// The running provider runner.
pub struct Payments {
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    simulated: Option<Arc<SimulatedProvider>>,
    /// Every running provider, by name, for its webhooks.
    providers: HashMap<String, Arc<dyn PaymentProvider>>,
    metrics: Arc<ProviderMetrics>,
}

impl Payments {
    /// The simulated provider, when it is enabled (its idempotency log is what tests look at).
    pub fn simulated(&self) -> Option<&SimulatedProvider> {
        self.simulated.as_deref()
    }

    /// Checks a webhook delivery for `provider` and says what it settles (the provider's own check:
    /// `stripe` sends them; the simulated provider always answers at once, so it refuses every one).
    pub fn webhook(&self, provider: &str, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<ProviderNotice, WebhookRefusal> {
        let Some(p) = self.providers.get(provider) else { return Err(WebhookRefusal::UnknownProvider) };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        p.webhook(headers, body, now)
    }

    /// The figures of every provider call, for `/metrics`.
    pub fn metrics(&self) -> Arc<ProviderMetrics> {
        self.metrics.clone()
    }

    /// Stops taking calls; calls in flight are abandoned and their payments re-driven at the next start.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// Starts the runner with every provider `cfg` enables, reporting to `engine`.
pub fn start(intake: CallIntake, cfg: &PaymentsConfig, engine: Engine) -> std::io::Result<Payments> {
    let mut providers: HashMap<String, Arc<dyn PaymentProvider>> = HashMap::new();
    let simulated = cfg.simulated.enabled.then(|| Arc::new(SimulatedProvider::new(cfg.simulated.clone())));
    if let Some(p) = &simulated {
        providers.insert(p.name().to_string(), p.clone());
    }
    let stripe = if cfg.stripe.enabled { Some(Arc::new(StripeProvider::new(&cfg.stripe).map_err(std::io::Error::other)?)) } else { None };
    if let Some(p) = &stripe {
        providers.insert(p.name().to_string(), p.clone());
    }
    let metrics = Arc::new(ProviderMetrics::new(providers.keys().map(String::as_str)));
    let webhook_takers = providers.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = watch::channel(false);
    let tries = Tries::of(cfg);
    let slots = cfg.concurrency.max(1);
    let figures = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("kassa-payments".into())
        .spawn(move || runtime.block_on(run(intake, providers, engine, tries, slots, figures, stopped)))?;
    Ok(Payments { stop, thread: Mutex::new(Some(thread)), simulated, providers: webhook_takers, metrics })
}

/// How hard the runner tries one provider step.
#[derive(Clone, Copy)]
struct Tries {
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

impl Tries {
    fn of(cfg: &PaymentsConfig) -> Tries {
        Tries {
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            attempts: cfg.attempts.max(1),
            backoff: Duration::from_millis(cfg.backoff_ms),
        }
    }

    fn delay_before(&self, attempt: u32) -> Duration {
        if attempt == 0 { Duration::ZERO } else { self.backoff.saturating_mul(1 << (attempt - 1).min(16)) }
    }
}

async fn run(
    mut intake: CallIntake,
    providers: HashMap<String, Arc<dyn PaymentProvider>>,
    engine: Engine,
    tries: Tries,
    slots: usize,
    metrics: Arc<ProviderMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(slots));
    // A re-drive of a call still being made is not made twice at once.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let call = tokio::select! {
            call = intake.0.recv() => match call { Some(call) => call, None => return },
            _ = stopped.changed() => return,
        };
        let (name, key) = match &call {
            ProviderCall::Charge(c) => (&c.provider, c.idempotency_key.clone()),
            ProviderCall::Refund(r) => (&r.provider, r.idempotency_key.clone()),
        };
        let Some(provider) = providers.get(name).cloned() else {
            tracing::error!(provider = name, "provider call for a provider that is not running");
            continue;
        };
        if !busy.lock().insert(key.clone()) {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (engine, busy, metrics) = (engine.clone(), busy.clone(), metrics.clone());
        tokio::spawn(async move {
            match call {
                ProviderCall::Charge(call) => {
                    let result = charge(&*provider, &call, tries, &metrics).await;
                    report(&engine, &call.payment_id, || cmd::charge_outcome(call.payment_id.clone(), call.attempt, result.clone())).await;
                }
                ProviderCall::Refund(call) => {
                    let result = refund(&*provider, &call, tries, &metrics).await;
                    let command = || cmd::refund_outcome(call.payment_id.clone(), call.refund_id.clone(), result.clone());
                    report(&engine, &call.payment_id, command).await;
                }
            }
            busy.lock().remove(&key);
            drop(slot);
        });
    }
}

/// Makes the charge, or finds out that it cannot be made and voids it.
async fn charge(provider: &dyn PaymentProvider, call: &ChargeCall, tries: Tries, metrics: &ProviderMetrics) -> CallOutcome {
    let last = match tried(tries, metrics, (&call.provider, &call.payment_id), "charge", || provider.charge(call)).await {
        Ok(charge) => return CallOutcome::Succeeded { provider_id: charge.id },
        Err(Final::Declined { code, message }) => return CallOutcome::Declined { code, reason: message },
        // Taken and still running at the provider: voiding it would be wrong; its webhook settles it.
        Err(Final::Pending(reason)) => return CallOutcome::Unknown { reason },
        Err(Final::GaveUp(last)) => last,
    };
    let code = if last == ProviderError::Timeout { "provider_timeout" } else { "provider_unavailable" };
    let record = |status: &str, started: Instant| metrics.record(&call.provider, "void", status, started.elapsed());
    for attempt in 0..tries.attempts {
        tokio::time::sleep(tries.delay_before(attempt)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(tries.timeout, provider.void(call)).await.unwrap_or(Err(ProviderError::Timeout));
        match answer {
            Ok(None) => {
                record("voided", started);
                return CallOutcome::Failed { code: code.into(), reason: format!("the payment provider {last}") };
            }
            Ok(Some(charge)) => {
                record("succeeded", started);
                return CallOutcome::Succeeded { provider_id: charge.id };
            }
            Err(e) => record(status_of::<()>(&Err(e)), started),
        }
    }
    CallOutcome::Unknown { reason: format!("the payment provider {last}, and the charge could not be voided") }
}

/// Gives the money back. A refund is never voided: one whose answer never came may have been made, so it
/// stays pending and is asked again under its key.
async fn refund(provider: &dyn PaymentProvider, call: &RefundCall, tries: Tries, metrics: &ProviderMetrics) -> CallOutcome {
    match tried(tries, metrics, (&call.provider, &call.payment_id), "refund", || provider.refund(call)).await {
        Ok(id) => CallOutcome::Succeeded { provider_id: id },
        Err(Final::Declined { code, message }) => CallOutcome::Declined { code, reason: message },
        Err(Final::Pending(reason)) => CallOutcome::Unknown { reason },
        Err(Final::GaveUp(last)) => CallOutcome::Unknown { reason: format!("the payment provider {last}") },
    }
}

/// How a provider step ended without success.
enum Final {
    Declined {
        code: String,
        message: String,
    },
    Pending(String),
    /// Every try failed; the last failure.
    GaveUp(ProviderError),
}

/// Makes one provider step up to `tries.attempts` times (timed, counted, with backoff) until it answers
/// something final: a success, a decline, or "pending".
async fn tried<T, F>(
    tries: Tries,
    metrics: &ProviderMetrics,
    (provider, payment_id): (&str, &str),
    operation: &'static str,
    step: impl Fn() -> F,
) -> Result<T, Final>
where
    F: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut last = ProviderError::Timeout;
    for attempt in 0..tries.attempts {
        tokio::time::sleep(tries.delay_before(attempt)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(tries.timeout, step()).await.unwrap_or(Err(ProviderError::Timeout));
        metrics.record(provider, operation, status_of(&answer), started.elapsed());
        match answer {
            Ok(done) => return Ok(done),
            Err(ProviderError::Declined { code, message }) => return Err(Final::Declined { code, message }),
            Err(ProviderError::Pending(reason)) => return Err(Final::Pending(reason)),
            Err(e) => last = e,
        }
        tracing::warn!(provider, payment_id, operation, attempt, error = %last, "provider call failed");
    }
    Err(Final::GaveUp(last))
}

/// The `status` label of a provider call's outcome.
fn status_of<T>(answer: &Result<T, ProviderError>) -> &'static str {
    match answer {
        Ok(_) => "succeeded",
        Err(ProviderError::Declined { .. }) => "declined",
        Err(ProviderError::Timeout) => "timeout",
        Err(ProviderError::Unavailable(_)) => "unavailable",
        Err(ProviderError::Pending(_)) => "pending",
    }
}

/// Tells the engine; a busy or restarting shard is asked again, a closed engine re-drives at its next start.
async fn report(engine: &Engine, payment_id: &str, command: impl Fn() -> kassa_engine::Cmd<kassa_engine::Payment>) {
    let mut delay = Duration::from_millis(50);
    loop {
        match engine.run(command()).await {
            Ok(_) => return,
            Err(e) if e.is_transient() && engine.is_open() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!(payment_id, error = %e, "provider outcome not recorded; the call is made again later");
                return;
            }
        }
    }
}
