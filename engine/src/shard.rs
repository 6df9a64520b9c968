//! The threaded driver of one shard: a pinned thread that drains its mailbox, runs the core, appends the
//! resulting events to the journal and group-commits them. Replies, messages to other shards and store
//! writes are released only once the events they depend on are durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, select};

use crate::command::{EngineError, Reply, Request};
use crate::core::{CatalogView, Core, Effects, Input, PeerMsg, shard_of_product};
use crate::delivery::{DeliveryCall, DeliveryCallSender};
use crate::event::{EVENT_KIND, EVENT_SCHEMA};
use crate::journal::JournalWriter;
use crate::model::{Micros, Product, now_micros};
use crate::provider_call::{ProviderCall, ProviderCallSender};
use crate::views::{Views, Writes};

pub type ReplySender = tokio::sync::oneshot::Sender<Result<Reply, EngineError>>;

/// How a shard answers writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Answer only once the command's events are on disk (fdatasync). The default.
    Sync,
    /// Answer as soon as the command is applied in memory; the journal still syncs continuously in the
    /// background (one sync in flight at a time), so the loss window on a crash is the commands of at most
    /// two sync cycles (about 2 × fdatasync latency, typically < 10 ms). Reads may trail a reply by as much.
    Async,
}

// Mail is moved once through the channel; boxing the request would add an allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum Mail {
    Client {
        request: Request,
        reply: ReplySender,
    },
    Peer(PeerMsg),
    /// The stores are durable up to `lsn`: journal segments below it (and below every feed cursor) can go.
    Checkpointed {
        lsn: u64,
        cursor_min: u64,
        /// Told once the segments are gone, so that `Engine::checkpoint` returns after the fact.
        done: std::sync::mpsc::Sender<()>,
    },
    Shutdown {
        done: std::sync::mpsc::Sender<()>,
    },
    /// Every shard stops at once for a consistent cut: each tells its durable LSN, then waits until the
    /// caller has heard from all of them. A shard only sends to peers what is durable, and a paused shard
    /// makes nothing durable, so no message received below one shard's LSN was sent above another's.
    Cut {
        durable: std::sync::mpsc::Sender<(usize, u64)>,
        resume: Arc<Resume>,
    },
}

/// Released once by whoever asked for a cut; a shard never waits for it longer than `CUT_WAIT_MAX` (a
/// caller that went away must not stop the engine).
#[derive(Default)]
pub struct Resume {
    released: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
}

const CUT_WAIT_MAX: Duration = Duration::from_secs(10);

impl Resume {
    pub fn release(&self) {
        *self.released.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.cond.notify_all();
    }

    fn wait(&self) {
        let released = self.released.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (released, timeout) =
            self.cond.wait_timeout_while(released, CUT_WAIT_MAX, |released| !*released).unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(released);
        if timeout.timed_out() {
            tracing::warn!("a consistent cut was not released in time; the shard goes on");
        }
    }
}

/// Figures a shard publishes for metrics (read from any thread).
#[derive(Default)]
pub struct ShardStats {
    pub commands_total: AtomicU64,
    pub batches_total: AtomicU64,
    pub events_total: AtomicU64,
    pub batch_events_max: AtomicU64,
    pub sync_micros_total: AtomicU64,
    pub sync_micros_last: AtomicU64,
    pub queue_depth: AtomicU64,
    pub durable_lsn: AtomicU64,
    pub checkpoint_lsn: AtomicU64,
    pub checkpoint_at_micros: AtomicU64,
    /// True while the shard's thread runs its loop.
    pub running: std::sync::atomic::AtomicBool,
    /// Client commands refused with `overloaded` (full mailbox or in-flight table).
    pub overloaded_total: AtomicU64,
    /// Messages to a peer dropped because its mailbox was full; the re-drive sends them again.
    pub peer_dropped_total: AtomicU64,
}

/// Reads products from whichever shard owns them, from that shard's in-memory view: what its stores
/// hold (every released write, nothing still unsynced), without a store transaction or a decode.
pub struct SharedCatalog {
    pub views: Vec<Views>,
}

impl CatalogView for SharedCatalog {
    fn product(&self, id: u64) -> Option<Arc<Product>> {
        let shard = shard_of_product(id, self.views.len() as u32) as usize;
        self.views[shard].products.get(id)
    }
}

/// Effects of one batch of steps, waiting for their events to be durable.
struct Pending {
    last_lsn: u64,
    writes: Writes,
    sends: Vec<(u32, PeerMsg)>,
    replies: Vec<(u64, Result<Reply, EngineError>)>,
    calls: Vec<ProviderCall>,
    deliveries: Vec<DeliveryCall>,
}

pub struct Shard {
    pub core: Core,
    pub journal: JournalWriter,
    pub views: Views,
    pub catalog: Arc<SharedCatalog>,
    pub inbox: Receiver<Mail>,
    pub peers: Vec<Sender<Mail>>,
    pub provider_calls: Option<ProviderCallSender>,
    pub deliveries: Option<DeliveryCallSender>,
    pub durability: Durability,
    pub stats: Arc<ShardStats>,
    pub tick_interval: Duration,
}

/// Most mail taken in one round; bounds the latency a single round can add.
const ROUND_MAIL_MAX: usize = 4096;
/// Most client commands a shard holds unanswered (waiting for a sync or for other shards).
const IN_FLIGHT_MAX: usize = 65_536;

impl Shard {
    pub fn run(mut self) {
        let mut tokens: HashMap<u64, ReplySender> = HashMap::new();
        let mut next_token: u64 = 1;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut next_tick = Instant::now();
        let mut shutdown: Option<std::sync::mpsc::Sender<()>> = None;
        let mut sync_started: Option<Instant> = None;

        // After recovery: re-send every unfinished checkout step.
        let mut fx = Effects::default();
        self.core.redrive(now_micros(), &mut fx);

        loop {
            let mut mail = Vec::new();
            if fx.is_empty() && shutdown.is_none() {
                let wait = next_tick.saturating_duration_since(Instant::now());
                select! {
                    recv(self.inbox) -> m => if let Ok(m) = m { mail.push(m) },
                    recv(self.journal.completions()) -> c => {
                        if let Ok(c) = c {
                            self.on_durable(c, &mut pending, &mut tokens, &mut sync_started);
                        }
                    },
                    default(wait) => {},
                }
            }
            while mail.len() < ROUND_MAIL_MAX {
                match self.inbox.try_recv() {
                    Ok(m) => mail.push(m),
                    Err(_) => break,
                }
            }
            self.stats.queue_depth.store(self.inbox.len() as u64, Ordering::Relaxed);
            let now = now_micros();
            for m in mail {
                if let Some(done) = self.deliver(m, now, &mut tokens, &mut next_token, &mut fx) {
                    shutdown = Some(done);
                }
            }
            if Instant::now() >= next_tick {
                self.core.step(Input::Tick, now, &*self.catalog, &mut fx);
                next_tick = Instant::now() + self.tick_interval;
            }
            if !fx.is_empty() {
                let batch = std::mem::take(&mut fx);
                self.stage(batch, &mut pending, &mut tokens);
            }
            // Timed from before `flush`: the inline journal backend syncs inside it.
            let flushing = Instant::now();
            if sync_started.is_none() && self.journal.flush().is_some() {
                sync_started = Some(flushing);
            }
            // Nothing in flight yet effects wait: they depend only on records already durable.
            if sync_started.is_none() {
                self.release(self.journal.durable_lsn(), &mut pending, &mut tokens);
            }
            if let Some(done) = shutdown.take() {
                self.finish(&mut pending, &mut tokens, &mut sync_started);
                let _ = done.send(());
                return;
            }
        }
    }

    /// Hands one piece of mail to the core (or acts on it); returns the sender to tell once a shutdown
    /// asked for is done.
    fn deliver(
        &mut self,
        mail: Mail,
        now: Micros,
        tokens: &mut HashMap<u64, ReplySender>,
        next_token: &mut u64,
        fx: &mut Effects,
    ) -> Option<std::sync::mpsc::Sender<()>> {
        match mail {
            Mail::Client { request, reply } => {
                // Bounds every table a client command can hold a place in (tokens, waiters, pending).
                if tokens.len() >= IN_FLIGHT_MAX {
                    self.stats.overloaded_total.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Err(EngineError::overloaded("overloaded: too many commands in flight; retry shortly")));
                    return None;
                }
                let token = *next_token;
                *next_token += 1;
                tokens.insert(token, reply);
                self.stats.commands_total.fetch_add(1, Ordering::Relaxed);
                self.core.step(Input::Client { token, request }, now, &*self.catalog, fx);
            }
            Mail::Peer(msg) => self.core.step(Input::Peer(msg), now, &*self.catalog, fx),
            Mail::Checkpointed { lsn, cursor_min, done } => {
                let keep_from = (lsn + 1).min(cursor_min);
                if let Err(e) = self.journal.remove_below(keep_from) {
                    tracing::warn!(shard = self.core.shard, error = %e, "removing old journal segments failed");
                }
                self.stats.checkpoint_lsn.store(lsn, Ordering::Relaxed);
                self.stats.checkpoint_at_micros.store(now as u64, Ordering::Relaxed);
                let _ = done.send(());
            }
            Mail::Shutdown { done } => return Some(done),
            Mail::Cut { durable, resume } => {
                let _ = durable.send((self.core.shard as usize, self.journal.durable_lsn()));
                resume.wait();
            }
        }
        None
    }

    /// Appends the batch's events to the journal and parks its effects until they are durable.
    fn stage(&mut self, fx: Effects, pending: &mut VecDeque<Pending>, tokens: &mut HashMap<u64, ReplySender>) {
        let Effects { events, writes, sends, mut replies, calls, deliveries } = fx;
        for (lsn, event) in &events {
            let appended = self.journal.append(EVENT_KIND, EVENT_SCHEMA, &event.encode());
            assert_eq!(appended, *lsn, "journal and core agree on LSNs");
        }
        self.stats.events_total.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.stats.batch_events_max.fetch_max(events.len() as u64, Ordering::Relaxed);
        if self.durability == Durability::Async {
            for (token, outcome) in replies.drain(..) {
                if let Some(tx) = tokens.remove(&token) {
                    let _ = tx.send(outcome);
                }
            }
        }
        // Even effects without events of their own wait for every earlier event (they may have read them).
        let last_lsn = self.core.next_lsn() - 1;
        pending.push_back(Pending { last_lsn, writes, sends, replies, calls, deliveries });
    }

    fn on_durable(
        &mut self,
        completion: Result<u64, std::io::Error>,
        pending: &mut VecDeque<Pending>,
        tokens: &mut HashMap<u64, ReplySender>,
        sync_started: &mut Option<Instant>,
    ) {
        let durable = match self.journal.complete(completion) {
            Ok(lsn) => lsn,
            // A failed fdatasync leaves the page cache in an unknown state: the only safe answer is to stop
            // and recover from what is known to be on disk (as PostgreSQL does).
            Err(e) => {
                tracing::error!(shard = self.core.shard, error = %e, "journal sync failed; aborting to recover from disk");
                std::process::abort();
            }
        };
        if let Some(started) = sync_started.take() {
            let micros = started.elapsed().as_micros() as u64;
            self.stats.sync_micros_total.fetch_add(micros, Ordering::Relaxed);
            self.stats.sync_micros_last.store(micros, Ordering::Relaxed);
            self.stats.batches_total.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.durable_lsn.store(durable, Ordering::Relaxed);
        self.release(durable, pending, tokens);
        // Everything that arrived during that sync goes out now in one write and one sync.
        let flushing = Instant::now();
        if self.journal.flush().is_some() {
            *sync_started = Some(flushing);
        }
    }

    /// Releases, in order, the effects whose events are all durable: their store writes in one apply per
    /// store, then messages to other shards, then replies, then provider calls and delivery attempts.
    fn release(&mut self, durable: u64, pending: &mut VecDeque<Pending>, tokens: &mut HashMap<u64, ReplySender>) {
        let mut ready = Vec::new();
        while pending.front().is_some_and(|p| p.last_lsn <= durable) {
            ready.push(pending.pop_front().expect("front exists"));
        }
        let Some(last) = ready.last() else { return };
        let lsn = last.last_lsn;
        let merged = if ready.len() == 1 { None } else { Some(Writes::merge(ready.iter().map(|p| &p.writes))) };
        let writes = merged.as_ref().unwrap_or(&ready[0].writes);
        if let Err(e) = writes.apply_to(&self.views, lsn) {
            // The journal has the events; the stores catch up by replay on restart.
            tracing::error!(shard = self.core.shard, error = %e, "store write failed; aborting to recover from the journal");
            std::process::abort();
        }
        for p in ready {
            for (shard, msg) in p.sends {
                // Never block on a peer: two shards with full mailboxes sending to each other would wait for
                // ever. Every peer message is idempotent and re-driven until answered, so dropping is safe.
                if let Err(TrySendError::Full(_)) = self.peers[shard as usize].try_send(Mail::Peer(msg)) {
                    self.stats.peer_dropped_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            for (token, outcome) in p.replies {
                if let Some(tx) = tokens.remove(&token) {
                    let _ = tx.send(outcome);
                }
            }
            for call in p.calls {
                // Never wait for the provider runner either: the payment stays `Charging` and is re-driven.
                let sent = self.provider_calls.as_ref().is_some_and(|tx| tx.try_send(call).is_ok());
                if !sent {
                    tracing::warn!(shard = self.core.shard, "provider call not taken by the provider runner; it is re-driven later");
                }
            }
            for call in p.deliveries {
                // Nor for the delivery runner: an attempt it does not take is due again after the re-drive delay.
                let sent = self.deliveries.as_ref().is_some_and(|tx| tx.try_send(call).is_ok());
                if !sent {
                    tracing::warn!(shard = self.core.shard, "delivery attempt not taken by the delivery runner; it is made again later");
                }
            }
        }
    }

    /// Clean stop: everything appended becomes durable and visible, then the stores are checkpointed.
    fn finish(&mut self, pending: &mut VecDeque<Pending>, tokens: &mut HashMap<u64, ReplySender>, sync_started: &mut Option<Instant>) {
        if sync_started.is_some() {
            if let Ok(c) = self.journal.completions().recv() {
                self.on_durable(c, pending, tokens, sync_started);
            }
            if sync_started.is_some()
                && let Ok(c) = self.journal.completions().recv()
            {
                self.on_durable(c, pending, tokens, sync_started);
            }
        }
        match self.journal.sync_all() {
            Ok(lsn) => {
                self.stats.durable_lsn.store(lsn, Ordering::Relaxed);
                self.release(lsn, pending, tokens);
            }
            Err(e) => tracing::error!(shard = self.core.shard, error = %e, "final journal sync failed"),
        }
        for (_, tx) in tokens.drain() {
            let _ = tx.send(Err(EngineError::unavailable("engine is shutting down")));
        }
        for store in [&self.views.catalog, &self.views.state] {
            if let Err(e) = store.persist() {
                tracing::error!(shard = self.core.shard, error = %e, "final checkpoint failed");
            }
        }
    }
}
