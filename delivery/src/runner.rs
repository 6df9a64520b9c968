//! The delivery runner: takes the shards' delivery attempts off their channel and makes them on a thread
//! and runtime of its own, so that a slow or absent receiver never holds a shard. Each attempt gets its
//! channel's timeout and one of a bounded number of slots; its outcome goes back to the engine as a
//! command, retried while the engine is busy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_engine::{DeliveryCall, DeliveryCallSender, DeliveryResult, Engine, cmd};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::NotificationsConfig;
use crate::http::HttpSender;
use crate::metrics::DeliveryMetrics;
use crate::sender::{Render, Sender};
use crate::smtp::SmtpSender;

/// Attempts waiting for the runner; a shard that finds it full leaves the attempt to be made again later.
const CHANNEL_CAPACITY: usize = 4096;

/// The receiving side of the shards' delivery attempts, handed to [`start`].
pub struct DeliveryIntake(mpsc::Receiver<DeliveryCall>);

/// The channel the engine releases delivery attempts into (`EngineConfig::deliveries`) and its intake.
pub fn channel() -> (DeliveryCallSender, DeliveryIntake) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    (tx, DeliveryIntake(rx))
}

/// The running delivery runner.
pub struct Deliveries {
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<DeliveryMetrics>,
}

impl Deliveries {
    /// The figures of every attempt, for `/metrics`.
    pub fn metrics(&self) -> Arc<DeliveryMetrics> {
        self.metrics.clone()
    }

    /// Stops taking attempts; attempts in flight are abandoned and made again at the next start.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// A channel's sender and how long one of its attempts may take.
struct Channel {
    sender: Arc<dyn Sender>,
    timeout: Duration,
}

/// Starts the runner with a sender for every channel `cfg` configures, reporting to `engine`; `render`
/// writes the bodies of the HTTP channels.
pub fn start(intake: DeliveryIntake, cfg: &NotificationsConfig, render: Render, engine: Engine) -> Result<Deliveries, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    // The SMTP connection pool belongs to the runtime it is made in.
    let channels = {
        let _inside = runtime.enter();
        senders(cfg, render)?
    };
    let metrics = Arc::new(DeliveryMetrics::default());
    let (stop, stopped) = watch::channel(false);
    let slots = cfg.concurrency.max(1);
    let figures = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("kassa-deliveries".into())
        .spawn(move || runtime.block_on(run(intake, channels, engine, slots, figures, stopped)))
        .map_err(|e| e.to_string())?;
    Ok(Deliveries { stop, thread: Mutex::new(Some(thread)), metrics })
}

/// A sender for every channel `cfg` configures, by channel.
fn senders(cfg: &NotificationsConfig, render: Render) -> Result<HashMap<String, Channel>, String> {
    let mut channels: HashMap<String, Channel> = HashMap::new();
    for (name, c) in cfg.http_channels() {
        if c.enabled() {
            let sender = Arc::new(HttpSender::new(name, c, render.clone())?);
            channels.insert(name.to_string(), Channel { sender, timeout: Duration::from_millis(c.timeout_ms.max(1)) });
        }
    }
    if cfg.smtp.enabled() {
        let sender = Arc::new(SmtpSender::new(&cfg.smtp)?);
        channels.insert("email".into(), Channel { sender, timeout: Duration::from_millis(cfg.smtp.timeout_ms.max(1)) });
    }
    Ok(channels)
}

async fn run(
    mut intake: DeliveryIntake,
    channels: HashMap<String, Channel>,
    engine: Engine,
    slots: usize,
    metrics: Arc<DeliveryMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(slots));
    // A re-made attempt still being made is not made twice at once.
    let busy: Arc<Mutex<HashSet<(String, u32)>>> = Arc::default();
    loop {
        let call = tokio::select! {
            call = intake.0.recv() => match call { Some(call) => call, None => return },
            _ = stopped.changed() => return,
        };
        let Some(channel) = channels.get(&call.notification.channel) else {
            tracing::error!(channel = call.notification.channel, "delivery attempt for a channel without a sender");
            continue;
        };
        let key = (call.delivery_id.clone(), call.attempt);
        if !busy.lock().insert(key.clone()) {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (sender, timeout) = (channel.sender.clone(), channel.timeout);
        let (engine, busy, metrics) = (engine.clone(), busy.clone(), metrics.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, sender.deliver(&call)).await.unwrap_or_else(|_| DeliveryResult::Failed {
                error: format!("timed out after {} ms", timeout.as_millis()),
                retryable: true,
            });
            let outcome = match &result {
                DeliveryResult::Delivered => "delivered",
                DeliveryResult::Failed { retryable: true, .. } => "retryable",
                DeliveryResult::Failed { retryable: false, .. } => "refused",
            };
            metrics.attempt(sender.channel(), outcome, started.elapsed());
            if let DeliveryResult::Failed { error, .. } = &result {
                tracing::info!(
                    notification = call.notification.id,
                    delivery = call.delivery_id,
                    attempt = call.attempt,
                    error,
                    "delivery attempt failed"
                );
            }
            if let Some(status) = report(&engine, &call, result).await {
                metrics.settled(sender.channel(), &status);
            }
            busy.lock().remove(&key);
            drop(slot);
        });
    }
}

/// Tells the engine; a busy or restarting shard is asked again, a closed engine makes the attempt again at
/// its next start. Answers the notification's status when this attempt was the one that decided it.
async fn report(engine: &Engine, call: &DeliveryCall, result: DeliveryResult) -> Option<String> {
    let mut delay = Duration::from_millis(50);
    loop {
        let command = cmd::delivery_outcome(call.notification.id.clone(), call.delivery_id.clone(), call.attempt, result.clone());
        match engine.run(command).await {
            Ok(n) => {
                let ours = n.deliveries.last().is_some_and(|d| d.delivery_id == call.delivery_id && d.attempt == call.attempt);
                return ours.then_some(n.status);
            }
            Err(e) if e.is_transient() && engine.is_open() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!(notification = call.notification.id, error = %e, "delivery outcome not recorded; the attempt is made again later");
                return None;
            }
        }
    }
}
