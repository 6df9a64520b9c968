//! The provider runner: takes the shards' charge calls off their channel and makes them on a thread and
//! runtime of its own, so that a slow or absent provider never holds a shard. Each call gets a timeout
//! and a few tries under its one idempotency key; when the provider cannot be reached at all, the
//! charge is voided so that the payment can fail with nothing taken. The outcome goes back to the
//! engine as a command, retried while the engine is busy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_engine::{ChargeCall, ChargeResult, ChargeSender, Engine, cmd};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::PaymentsConfig;
use crate::metrics::ProviderMetrics;
use crate::provider::{PaymentProvider, ProviderError};
use crate::simulated::SimulatedProvider;
use crate::stripe::StripeProvider;

/// Calls waiting for the runner; a shard that finds it full leaves the payment to be re-driven.
const CHANNEL_CAPACITY: usize = 4096;

/// The receiving side of the shards' charge calls, handed to [`start`].
pub struct ChargeIntake(mpsc::Receiver<ChargeCall>);

/// The channel the engine releases charge calls into (`EngineConfig::charges`) and its intake.
pub fn channel() -> (ChargeSender, ChargeIntake) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (tx, ChargeIntake(rx))
}

/// The running provider runner.
pub struct Payments {
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    simulated: Option<Arc<SimulatedProvider>>,
    metrics: Arc<ProviderMetrics>,
}

impl Payments {
    /// The simulated provider, when it is enabled (its idempotency log is what tests look at).
    pub fn simulated(&self) -> Option<&SimulatedProvider> {
        self.simulated.as_deref()
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
pub fn start(intake: ChargeIntake, cfg: &PaymentsConfig, engine: Engine) -> std::io::Result<Payments> {
    let mut providers: HashMap<String, Arc<dyn PaymentProvider>> = HashMap::new();
    let simulated = cfg.simulated.enabled.then(|| Arc::new(SimulatedProvider::new(cfg.simulated.clone())));
    if let Some(p) = &simulated {
        providers.insert(p.name().to_string(), p.clone());
    }
    if cfg.stripe.enabled {
        let stripe = StripeProvider::new(&cfg.stripe).map_err(std::io::Error::other)?;
        providers.insert(stripe.name().to_string(), Arc::new(stripe));
    }
    let metrics = Arc::new(ProviderMetrics::new(providers.keys().map(String::as_str)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = watch::channel(false);
    let tries = Tries::of(cfg);
    let slots = cfg.concurrency.max(1);
    let figures = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("kassa-payments".into())
        .spawn(move || runtime.block_on(run(intake, providers, engine, tries, slots, figures, stopped)))?;
    Ok(Payments { stop, thread: Mutex::new(Some(thread)), simulated, metrics })
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
    mut intake: ChargeIntake,
    providers: HashMap<String, Arc<dyn PaymentProvider>>,
    engine: Engine,
    tries: Tries,
    slots: usize,
    metrics: Arc<ProviderMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(slots));
    // A re-drive of a charge still being made is not made twice at once.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let call = tokio::select! {
            call = intake.0.recv() => match call { Some(call) => call, None => return },
            _ = stopped.changed() => return,
        };
        let Some(provider) = providers.get(&call.provider).cloned() else {
            tracing::error!(provider = call.provider, payment_id = call.payment_id, "charge call for a provider that is not running");
            continue;
        };
        if !busy.lock().insert(call.idempotency_key.clone()) {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (engine, busy, metrics) = (engine.clone(), busy.clone(), metrics.clone());
        tokio::spawn(async move {
            let result = charge(&*provider, &call, tries, &metrics).await;
            report(&engine, &call, result).await;
            busy.lock().remove(&call.idempotency_key);
            drop(slot);
        });
    }
}

/// Makes the charge, or finds out that it cannot be made and voids it.
async fn charge(provider: &dyn PaymentProvider, call: &ChargeCall, tries: Tries, metrics: &ProviderMetrics) -> ChargeResult {
    let record = |operation, status: &str, started: Instant| metrics.record(&call.provider, operation, status, started.elapsed());
    let mut last = ProviderError::Timeout;
    for attempt in 0..tries.attempts {
        tokio::time::sleep(tries.delay_before(attempt)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(tries.timeout, provider.charge(call)).await.unwrap_or(Err(ProviderError::Timeout));
        record("charge", status_of(&answer), started);
        match answer {
            Ok(charge) => return ChargeResult::Charged { charge_id: charge.id },
            Err(ProviderError::Declined { code, message }) => return ChargeResult::Declined { code, reason: message },
            Err(e) => last = e,
        }
        tracing::warn!(payment_id = call.payment_id, provider = call.provider, attempt, error = %last, "charge call failed");
    }
    let code = if last == ProviderError::Timeout { "provider_timeout" } else { "provider_unavailable" };
    for attempt in 0..tries.attempts {
        tokio::time::sleep(tries.delay_before(attempt)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(tries.timeout, provider.void(call)).await.unwrap_or(Err(ProviderError::Timeout));
        match answer {
            Ok(None) => {
                record("void", "voided", started);
                return ChargeResult::Failed { code: code.into(), reason: format!("the payment provider {last}") };
            }
            Ok(Some(charge)) => {
                record("void", "succeeded", started);
                return ChargeResult::Charged { charge_id: charge.id };
            }
            Err(e) => record("void", status_of::<()>(&Err(e)), started),
        }
    }
    ChargeResult::Unknown { reason: format!("the payment provider {last}, and the charge could not be voided") }
}

/// The `status` label of a provider call's outcome.
fn status_of<T>(answer: &Result<T, ProviderError>) -> &'static str {
    match answer {
        Ok(_) => "succeeded",
        Err(ProviderError::Declined { .. }) => "declined",
        Err(ProviderError::Timeout) => "timeout",
        Err(ProviderError::Unavailable(_)) => "unavailable",
    }
}

/// Tells the engine; a busy or restarting shard is asked again, a closed engine re-drives at its next start.
async fn report(engine: &Engine, call: &ChargeCall, result: ChargeResult) {
    let mut delay = Duration::from_millis(50);
    loop {
        match engine.run(cmd::charge_outcome(call.payment_id.clone(), call.attempt, result.clone())).await {
            Ok(_) => return,
            Err(e) if e.is_transient() && engine.is_open() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!(payment_id = call.payment_id, error = %e, "charge outcome not recorded; the charge is asked again later");
                return;
            }
        }
    }
}
