//! Runs adapters: one task per (adapter, shard) on the adapters' own runtime, away from the shard cores.
//!
//! A task's whole state is the target's cursor. It connects, reads the cursor (or bootstraps from a
//! snapshot when there is none, or when the feed no longer holds it), then applies the feed batch by batch,
//! each batch with its cursor in one target transaction. On any error it waits (exponential backoff with
//! jitter), reconnects and starts again from the cursor the target committed, so an ambiguous commit is
//! resolved by the target itself and version guards make any overlap harmless. The engine's named cursor
//! (`adapter-<name>`) only pins the journal the mirror still needs.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_engine::{Engine, FeedError, FeedRecord, Subscription};
use rand::Rng;
use tokio::sync::watch;

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::status::{AdapterStatus, ShardCell, ShardState};
use crate::verify::Verification;
use crate::{Connect, Entity, Target, TargetError, Tuning};
use parking_lot::Mutex;

/// How often a following task re-saves the engine's pin (each save is an fsync).
const PIN_EVERY: Duration = Duration::from_secs(1);

/// The running adapters of one engine.
pub struct Adapters {
    engine: Engine,
    data_dir: std::path::PathBuf,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    stop: watch::Sender<bool>,
    running: Vec<Running>,
}

type Verifier = Arc<dyn Fn(Engine, Duration) -> futures::future::BoxFuture<'static, Verification> + Send + Sync>;

struct Running {
    name: &'static str,
    cells: Vec<Arc<ShardCell>>,
    dead: Arc<DeadLetters>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    verifier: Verifier,
}

impl Adapters {
    /// An empty set with its runtime (`threads` workers named `kassa-adapters`); add targets with
    /// [`Adapters::spawn`].
    pub fn new(engine: &Engine, data_dir: &Path, threads: usize) -> std::io::Result<Adapters> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kassa-adapters")
            .enable_all()
            .build()?;
        let (stop, _) = watch::channel(false);
        let handle = runtime.handle().clone();
        Ok(Adapters {
            engine: engine.clone(),
            data_dir: data_dir.to_path_buf(),
            runtime: Mutex::new(Some(runtime)),
            handle,
            stop,
            running: Vec::new(),
        })
    }

    /// Starts following every shard into the target `connect` opens.
    pub fn spawn<C: Connect>(&mut self, connect: C, tuning: Tuning) {
        let name = connect.name();
        let shards = self.engine.shards();
        let connect = Arc::new(connect);
        let dead = Arc::new(DeadLetters::new(&self.data_dir, name));
        let cells: Vec<Arc<ShardCell>> = (0..shards).map(|s| Arc::new(ShardCell::new(s))).collect();
        let tasks = cells
            .iter()
            .enumerate()
            .map(|(shard, cell)| {
                let task = Task {
                    engine: self.engine.clone(),
                    connect: connect.clone(),
                    tuning: tuning.clone(),
                    shard,
                    shards,
                    pin: format!("adapter-{name}"),
                    cell: cell.clone(),
                    dead: dead.clone(),
                    stop: self.stop.subscribe(),
                };
                self.handle.spawn(task.run())
            })
            .collect();
        let verifier: Verifier = {
            let connect = connect.clone();
            Arc::new(move |engine: Engine, settle: Duration| {
                let connect = connect.clone();
                Box::pin(async move { crate::verify::verify(&engine, &*connect, settle).await })
            })
        };
        self.running.push(Running { name, cells, dead, tasks: Mutex::new(tasks), verifier });
    }

    /// Compares every target with the engine (see [`crate::verify`]), on the adapters' runtime.
    pub async fn verify(&self, settle: Duration) -> Vec<Verification> {
        let mut out = Vec::new();
        for r in &self.running {
            let job = self.handle.spawn((r.verifier)(self.engine.clone(), settle));
            out.push(job.await.unwrap_or_else(|e| Verification {
                adapter: r.name.to_string(),
                shards: Vec::new(),
                error: Some(format!("verification stopped: {e}")),
            }));
        }
        out
    }

    /// The enabled adapters' names.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|r| r.name).collect()
    }

    pub fn status(&self) -> Vec<AdapterStatus> {
        let heads: Vec<u64> = self.engine.stats().shards.iter().map(|s| s.durable_lsn).collect();
        let head = |shard: usize| heads.get(shard).copied().unwrap_or(0);
        self.running
            .iter()
            .map(|r| AdapterStatus { name: r.name.to_string(), shards: r.cells.iter().enumerate().map(|(i, c)| c.read(head(i))).collect() })
            .collect()
    }

    /// Every adapter's dead letters, oldest first per adapter.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.running.iter().flat_map(|r| r.dead.list()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Stops every task at its next wait (an in-flight target transaction is finished or abandoned; either
    /// way the target's cursor says where to resume) and waits up to `grace` for them.
    pub fn stop(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let Some(runtime) = self.runtime.lock().take() else { return };
        let tasks: Vec<_> = self.running.iter().flat_map(|r| std::mem::take(&mut *r.tasks.lock())).collect();
        runtime.block_on(async {
            let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
        });
        runtime.shutdown_timeout(grace);
    }
}

impl Drop for Adapters {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// One shard's mirror into one target.
struct Task<C: Connect> {
    engine: Engine,
    connect: Arc<C>,
    tuning: Tuning,
    shard: usize,
    shards: usize,
    pin: String,
    cell: Arc<ShardCell>,
    dead: Arc<DeadLetters>,
    stop: watch::Receiver<bool>,
}

/// Why a task left its connected loop.
enum Exit {
    Stopped,
    Failed(TargetError),
}

impl From<TargetError> for Exit {
    fn from(e: TargetError) -> Exit {
        Exit::Failed(e)
    }
}

impl<C: Connect> Task<C> {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            self.cell.update(|s| s.state = ShardState::Connecting);
            let connected = match self.stoppable(self.connect.connect(self.shard, self.shards)).await {
                None => break,
                Some(r) => r,
            };
            let exit = match connected {
                Ok(mut target) => self.follow(&mut target, &mut failures).await,
                Err(e) => Exit::Failed(e),
            };
            let Exit::Failed(e) = exit else { break };
            failures = failures.saturating_add(1);
            self.cell.update(|s| {
                s.state = ShardState::Retrying;
                s.retries_total += 1;
                s.last_error = Some(e.to_string());
            });
            tracing::warn!(adapter = self.connect.name(), shard = self.shard, error = %e, "adapter write failed; retrying");
            if self.stoppable(tokio::time::sleep(self.backoff(failures))).await.is_none() {
                break;
            }
        }
        self.cell.update(|s| s.state = ShardState::Stopped);
    }

    /// Exponential from `retry_min_ms` to `retry_max_ms`, each delay drawn from its upper half (jitter, so
    /// the shards of a target that comes back do not all retry at once).
    fn backoff(&self, failures: u32) -> Duration {
        let max = self.tuning.retry_max_ms.max(1);
        let base = self.tuning.retry_min_ms.max(1).saturating_mul(1u64 << failures.min(20).saturating_sub(1)).min(max);
        Duration::from_millis(rand::rng().random_range(base / 2..=base))
    }

    /// Runs `f` unless a stop comes first (`None`).
    async fn stoppable<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return None;
        }
        tokio::select! {
            _ = stop.changed() => None,
            value = f => Some(value),
        }
    }

    async fn follow(&mut self, target: &mut C::Target, failures: &mut u32) -> Exit {
        let from = match self.stoppable(target.cursor()).await {
            None => return Exit::Stopped,
            Some(Err(e)) => return Exit::Failed(e),
            Some(Ok(Some(cursor))) => cursor,
            Some(Ok(None)) => match self.bootstrap(target).await {
                Ok(next) => next,
                Err(exit) => return exit,
            },
        };
        let mut sub = match self.subscribe(target, from).await {
            Ok(sub) => sub,
            Err(exit) => return exit,
        };
        self.cell.update(|s| {
            s.state = ShardState::Following;
            s.last_error = None;
        });
        let mut pinned_at = Instant::now();
        loop {
            let batch = match self.stoppable(sub.next_batch(self.tuning.batch_max)).await {
                None => return Exit::Stopped,
                Some(Ok(batch)) => batch,
                Some(Err(FeedError::NeedsSnapshot { .. })) => {
                    // The journal no longer holds what the mirror needs (retention dropped its pin).
                    let next = match self.bootstrap(target).await {
                        Ok(next) => next,
                        Err(exit) => return exit,
                    };
                    sub = match self.subscribe(target, next).await {
                        Ok(sub) => sub,
                        Err(exit) => return exit,
                    };
                    continue;
                }
                Some(Err(e)) => return Exit::Failed(TargetError::Unavailable(format!("feed: {e}"))),
            };
            let next = match self.write(target, &batch).await {
                Ok(next) => next,
                Err(exit) => return exit,
            };
            *failures = 0;
            self.cell.update(|s| {
                s.applied_total += batch.len() as u64;
                s.state = ShardState::Following;
            });
            self.cell.position(next, sub.head());
            if pinned_at.elapsed() >= PIN_EVERY {
                self.pin(next);
                pinned_at = Instant::now();
            }
            if batch.len() < self.tuning.batch_max
                && self.tuning.linger_ms > 0
                && self.stoppable(tokio::time::sleep(Duration::from_millis(self.tuning.linger_ms))).await.is_none()
            {
                return Exit::Stopped;
            }
        }
    }

    /// Subscribes from `from`, bootstrapping first if the feed no longer holds it.
    async fn subscribe(&mut self, target: &mut C::Target, from: u64) -> Result<Subscription, Exit> {
        let sub = match self.engine.subscribe(self.shard, from) {
            Ok(sub) => sub,
            Err(FeedError::NeedsSnapshot { .. }) => {
                let next = self.bootstrap(target).await?;
                self.engine.subscribe(self.shard, next).map_err(|e| TargetError::Unavailable(format!("feed: {e}")))?
            }
            Err(e) => return Err(Exit::Failed(TargetError::Unavailable(format!("feed: {e}")))),
        };
        self.pin(sub.position());
        self.cell.position(sub.position(), sub.head());
        Ok(sub)
    }

    /// Keeps the journal from `next` on for this mirror (the target's cursor stays the authority).
    fn pin(&self, next: u64) {
        if let Err(e) = self.engine.advance_feed_cursor(&self.pin, self.shard, next) {
            tracing::warn!(cursor = %self.pin, shard = self.shard, error = %e, "saving the adapter's feed pin failed");
        }
    }

    /// Writes one batch and its cursor; a record the target rejects goes to the dead letters and the rest
    /// is written around it. Returns the cursor now committed.
    async fn write(&mut self, target: &mut C::Target, batch: &[FeedRecord]) -> Result<u64, Exit> {
        let mut rest = batch;
        loop {
            let Some(last) = rest.last() else { return Ok(batch.last().map_or(0, |r| r.lsn + 1)) };
            let next = last.lsn + 1;
            match self.stoppable(target.apply(rest, next)).await {
                None => return Err(Exit::Stopped),
                Some(Ok(())) => return Ok(next),
                Some(Err(TargetError::Rejected { lsn, reason })) => {
                    let Some(at) = rest.iter().position(|r| r.lsn == lsn) else {
                        return Err(Exit::Failed(TargetError::Unavailable(format!("target rejected lsn {lsn}, which it was not sent"))));
                    };
                    if at > 0 {
                        self.apply_strict(target, &rest[..at], lsn).await?;
                    }
                    self.dead.record(self.connect.name(), &rest[at], &reason).map_err(|e| {
                        Exit::Failed(TargetError::Unavailable(format!("cannot record a dead letter ({e}); not skipping lsn {lsn}")))
                    })?;
                    self.apply_strict(target, &[], lsn + 1).await?;
                    self.cell.update(|s| s.dead_letters_total += 1);
                    tracing::error!(adapter = self.connect.name(), shard = self.shard, lsn, %reason, "record rejected by the target; dead-lettered");
                    rest = &rest[at + 1..];
                }
                Some(Err(e)) => return Err(Exit::Failed(e)),
            }
        }
    }

    /// An apply whose every record the target has already accepted once: a rejection now is a failure.
    async fn apply_strict(&mut self, target: &mut C::Target, records: &[FeedRecord], next: u64) -> Result<(), Exit> {
        match self.stoppable(target.apply(records, next)).await {
            None => Err(Exit::Stopped),
            Some(Ok(())) => Ok(()),
            Some(Err(TargetError::Rejected { lsn, reason })) => {
                Err(Exit::Failed(TargetError::Unavailable(format!("target rejected lsn {lsn} on a second write: {reason}"))))
            }
            Some(Err(e)) => Err(Exit::Failed(e)),
        }
    }

    /// Copies the shard's snapshot into the target and returns the LSN to follow from.
    async fn bootstrap(&mut self, target: &mut C::Target) -> Result<u64, Exit> {
        self.cell.update(|s| {
            s.state = ShardState::Bootstrapping;
            s.bootstraps_total += 1;
        });
        tracing::info!(adapter = self.connect.name(), shard = self.shard, "adapter bootstrapping from a snapshot");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Entity>>(2);
        let (engine, shard, pin, chunk) = (self.engine.clone(), self.shard, self.pin.clone(), self.tuning.batch_max.max(1));
        // The snapshot is read on a blocking thread (store iteration) and handed over in chunks.
        let reader = tokio::task::spawn_blocking(move || -> Result<u64, FeedError> {
            let snapshot = engine.snapshot(shard, Some(&pin))?;
            let mut chunks = Chunks { tx, buf: Vec::with_capacity(chunk), chunk };
            crate::entity::walk(&snapshot, &mut |e| chunks.push(e))?;
            chunks.flush();
            Ok(snapshot.lsn())
        });
        let mut present = HashSet::new();
        while let Some(entities) = self.stoppable(rx.recv()).await.ok_or(Exit::Stopped)? {
            present.extend(entities.iter().map(Entity::key));
            self.stoppable(target.load(&entities)).await.ok_or(Exit::Stopped)??;
        }
        let lsn = reader
            .await
            .map_err(|e| TargetError::Unavailable(format!("snapshot reader: {e}")))?
            .map_err(|e| TargetError::Unavailable(format!("snapshot: {e}")))?;
        self.stoppable(target.finish_load(lsn, &present)).await.ok_or(Exit::Stopped)??;
        tracing::info!(adapter = self.connect.name(), shard = self.shard, lsn, entities = present.len(), "adapter bootstrap done");
        Ok(lsn + 1)
    }
}

/// Hands snapshot entities over in chunks; stops the walk once the receiver is gone.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Vec<Entity>>,
    buf: Vec<Entity>,
    chunk: usize,
}

impl Chunks {
    fn push(&mut self, entity: Entity) -> bool {
        self.buf.push(entity);
        if self.buf.len() < self.chunk {
            return true;
        }
        self.tx.blocking_send(std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk))).is_ok()
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.tx.blocking_send(std::mem::take(&mut self.buf));
        }
    }
}
