//! The `Engine` handle: opens (recovers) the shards, routes commands to their owners, serves reads
//! straight from the stores, checkpoints, and shuts down cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;

use crate::cmd::{Answer, Cmd, typed};
use crate::command::{Command, EngineError, Reply, Request};
use crate::core::{Core, CoreConfig, Loaded, fnv1a, notification_not_found, payment_not_found, shard_of_product, shard_of_user};
use crate::feed::CursorBook;
use crate::journal::{self, DurableWatch, IoMode, JournalConfig, JournalWriter};
use crate::model::{Notification, Payment, now_micros};
use crate::money::Currency;
use crate::shard::{Durability, Mail, Shard, ShardStats, SharedCatalog};
use crate::stats::EngineStats;
use crate::store::{Keyspace, StoreError};
use crate::views::{self, StoreChoice, Views};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// 0 = automatic: an existing data directory keeps its count, a new one gets one shard per two
    /// available cores (at least one).
    pub shards: usize,
    pub durability: Durability,
    pub store: StoreChoice,
    /// Block cache budget of all stores together.
    pub cache_bytes: u64,
    pub journal_io: IoMode,
    pub segment_bytes_max: u64,
    pub checkpoint_interval: Duration,
    pub pin_threads: bool,
    pub currency: Currency,
    pub restock_on_refund: bool,
    pub low_stock_threshold: i64,
    /// Mailbox bound per shard: a client command that finds it full is refused with `overloaded`.
    pub mailbox_capacity: usize,
    /// A cross-shard step unanswered for this long is sent again (messages dropped on a full mailbox,
    /// steps left unfinished by a crash).
    pub redrive_after: Duration,
    /// Most journal a named feed cursor may keep for itself; past it the cursor is dropped and its
    /// consumer starts again from a snapshot (so a consumer that stays away cannot fill the disk).
    pub feed_retention_bytes: u64,
    /// A feed cursor that keeps journal for itself and has not advanced for this long is dropped too.
    pub feed_retention_age: Duration,
    /// Providers Kassa charges through when a payment is processed; each needs `charges`.
    pub charged_providers: Vec<String>,
    /// Where the shards release provider calls (drained off the shard threads by the provider runner).
    pub provider_calls: Option<crate::provider_call::ProviderCallSender>,
    /// A provider call the runner has not answered for this long is made again.
    pub charge_redrive_after: Duration,
    /// Channels Kassa delivers notifications on, each with its attempts and backoff; each needs
    /// `deliveries`. Notifications on other channels are only recorded `sent`, as the old system did.
    pub delivered_channels: Vec<crate::delivery::DeliveryPolicy>,
    /// Where the shards release delivery attempts (made off the shard threads by the delivery runner).
    pub deliveries: Option<crate::delivery::DeliveryCallSender>,
    /// A delivery attempt the runner has not answered for this long is made again.
    pub delivery_redrive_after: Duration,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: 0,
            durability: Durability::Sync,
            store: StoreChoice::Auto,
            cache_bytes: 256 << 20,
            journal_io: IoMode::Inline,
            segment_bytes_max: 64 << 20,
            checkpoint_interval: Duration::from_secs(10),
            pin_threads: true,
            currency: Currency::USD,
            restock_on_refund: true,
            low_stock_threshold: 10,
            mailbox_capacity: 65_536,
            redrive_after: Duration::from_secs(2),
            feed_retention_bytes: 4 << 30,
            feed_retention_age: Duration::from_secs(24 * 3600),
            charged_providers: Vec::new(),
            provider_calls: None,
            charge_redrive_after: Duration::from_secs(60),
            delivered_channels: Vec::new(),
            deliveries: None,
            delivery_redrive_after: Duration::from_secs(60),
        }
    }

    /// The shard count a new data directory gets. Automatic: one shard per two cores, because every core
    /// also runs a listener and on 2 cores one shard (one journal sync stream, no cross-shard steps)
    /// measured cheaper per durable write and per checkout than two (BENCHMARKS.md).
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 { std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)) } else { self.shards }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] views::DecodeError),
    #[error("{0}")]
    Layout(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("corrupt record in shard {shard} at lsn {lsn}: {reason}")]
    Corrupt { shard: usize, lsn: u64, reason: String },
}

struct Inner {
    cfg: EngineConfig,
    mailboxes: Vec<Sender<Mail>>,
    views: Vec<Views>,
    durable: Vec<DurableWatch>,
    stats: Vec<Arc<ShardStats>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    /// The next product id: one counter for the whole engine, so that ids follow creation order across
    /// shards as the old `bigserial` did. Recovered as one past the highest id of any shard; ids lost to a
    /// crash or a refused create are gaps, as with a sequence.
    next_product_id: AtomicU64,
    closed: AtomicBool,
    cursors: CursorBook,
    recovery: Duration,
    io_backend: &'static str,
}

/// A handle to a running engine: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What recovery did, for logs and metrics.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub shards: usize,
    pub recovery: Duration,
    pub io_backend: &'static str,
}

fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard:03}"))
}

/// The shard count is fixed when the data directory is created: ids and users are placed by it.
/// The data directory's shard count: the one it was created with (which a configured count must
/// match; automatic takes it), or for a new directory the configured or automatic count, recorded.
fn check_layout(cfg: &EngineConfig) -> Result<usize, OpenError> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let marker = cfg.data_dir.join("SHARDS");
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let existing: usize = text.trim().parse().map_err(|_| OpenError::Layout(format!("unreadable {}", marker.display())))?;
            if cfg.shards != 0 && existing != cfg.shards {
                return Err(OpenError::Layout(format!(
                    "data directory {} was created with {existing} shards; start with --shards {existing}",
                    cfg.data_dir.display()
                )));
            }
            Ok(existing)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let shards = cfg.shard_count();
            assert!((1..=1024).contains(&shards), "shard count in 1..=1024");
            let tmp = cfg.data_dir.join("SHARDS.tmp");
            std::fs::write(&tmp, format!("{shards}\n"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &marker)?;
            std::fs::File::open(&cfg.data_dir)?.sync_all()?;
            Ok(shards)
        }
        Err(e) => Err(e.into()),
    }
}

/// Rebuilds one shard's memory from its stores plus the journal after each store's LSN.
fn recover_shard(index: usize, core: &mut Core, views: &Views, journal: &JournalWriter, dir: &Path) -> Result<(), OpenError> {
    let corrupt = |reason: String| OpenError::Corrupt { shard: index, lsn: 0, reason };
    let converted = crate::migrate::upgrade_state_store(&*views.state)?;
    if converted > 0 {
        tracing::info!(shard = index, converted, schema = crate::migrate::SCHEMA, "state store records migrated");
    }
    core.reserve_for_load(
        views.catalog.len_hint(Keyspace::Reservations),
        views.state.len_hint(Keyspace::Baskets),
        views.state.len_hint(Keyspace::Payments),
        views.state.len_hint(Keyspace::Notifications),
        views.state.len_hint(Keyspace::Idempotency),
    );
    let mut failure: Option<OpenError> = None;
    let mut load = |store: &Arc<dyn crate::store::Store>, ks: Keyspace, decode: &dyn Fn(&[u8]) -> Result<Loaded, views::DecodeError>| {
        store.for_each(ks, &mut |_, v| match decode(v) {
            Ok(record) => {
                core.load(record);
                true
            }
            Err(e) => {
                failure = Some(corrupt(e.to_string()));
                false
            }
        })
    };
    load(&views.catalog, Keyspace::Products, &|v| Ok(Loaded::Product(views::decode_product(v)?)))?;
    load(&views.catalog, Keyspace::Reservations, &|v| Ok(Loaded::Reservation(views::decode_reservation(v)?)))?;
    load(&views.state, Keyspace::Baskets, &|v| Ok(Loaded::Basket(views::decode_basket(v)?)))?;
    load(&views.state, Keyspace::Payments, &|v| Ok(Loaded::Payment(views::decode_payment(v)?)))?;
    load(&views.state, Keyspace::Notifications, &|v| Ok(Loaded::Notification(views::decode_notification(v)?)))?;
    load(&views.state, Keyspace::Idempotency, &|v| Ok(Loaded::Idempotency(views::decode_idempotency(v)?)))?;
    load(&views.state, Keyspace::Wallets, &|v| Ok(Loaded::Wallet(views::decode_wallet(v)?)))?;
    if let Some(e) = failure {
        return Err(e);
    }
    // The view starts as the stores left it; the replay below publishes what the journal adds.
    views.products.load(core.products.values());
    let catalog_lsn = views.catalog.applied_lsn()?;
    let state_lsn = views.state.applied_lsn()?;
    let durable_end = journal.next_lsn() - 1;
    if catalog_lsn.max(state_lsn) > durable_end {
        return Err(OpenError::Layout(format!(
            "shard {index}: stores applied up to lsn {} but the journal ends at {durable_end}",
            catalog_lsn.max(state_lsn)
        )));
    }
    let from = catalog_lsn.min(state_lsn) + 1;
    let mut writes = crate::views::Writes::default();
    let mut replayed = 0u64;
    for record in journal::read_all(dir, from)? {
        let event = crate::migrate::decode_event(record.schema, &record.payload).map_err(|reason| OpenError::Corrupt {
            shard: index,
            lsn: record.lsn,
            reason,
        })?;
        let store_lsn = if event.view() == crate::views::View::Catalog { catalog_lsn } else { state_lsn };
        if record.lsn > store_lsn {
            core.apply(record.lsn, &event, &mut writes);
            replayed += 1;
        }
    }
    writes.apply_to(views, journal.next_lsn() - 1)?;
    tracing::info!(shard = index, replayed, from_lsn = from, next_lsn = journal.next_lsn(), "shard recovered");
    core.set_next_lsn(journal.next_lsn());
    core.check_invariants().map_err(|reason| OpenError::Corrupt { shard: index, lsn: 0, reason })?;
    Ok(())
}

impl Engine {
    /// Opens the engine: recovers every shard (stores + journal replay), starts the shard threads and the
    /// checkpointer, and re-drives unfinished checkouts.
    pub fn open(cfg: EngineConfig) -> Result<Engine, OpenError> {
        let started = Instant::now();
        abort_on_shard_panic();
        #[cfg(feature = "failpoints")]
        configure_failpoints();
        let n = check_layout(&cfg)?;
        if !cfg.charged_providers.is_empty() && cfg.provider_calls.is_none() {
            return Err(OpenError::Config("charged providers are configured but nothing takes their calls".into()));
        }
        if !cfg.delivered_channels.is_empty() && cfg.deliveries.is_none() {
            return Err(OpenError::Config("delivered channels are configured but nothing makes their deliveries".into()));
        }
        if let Some(p) = cfg.delivered_channels.iter().find(|p| !(1..=crate::limits::DELIVERY_ATTEMPTS_MAX).contains(&p.max_attempts)) {
            let max = crate::limits::DELIVERY_ATTEMPTS_MAX;
            return Err(OpenError::Config(format!("channel {}: max_attempts must be 1..={max}, not {}", p.channel, p.max_attempts)));
        }
        let mut core_cfg = CoreConfig::new(n as u32);
        core_cfg.currency = cfg.currency;
        core_cfg.restock_on_refund = cfg.restock_on_refund;
        core_cfg.low_stock_threshold = cfg.low_stock_threshold;
        core_cfg.redrive_after = i64::try_from(cfg.redrive_after.as_micros()).unwrap_or(i64::MAX).max(1);
        core_cfg.charged_providers.clone_from(&cfg.charged_providers);
        core_cfg.charge_redrive_after = i64::try_from(cfg.charge_redrive_after.as_micros()).unwrap_or(i64::MAX).max(1);
        core_cfg.delivered_channels.clone_from(&cfg.delivered_channels);
        core_cfg.delivery_redrive_after = i64::try_from(cfg.delivery_redrive_after.as_micros()).unwrap_or(i64::MAX).max(1);

        let mut views = Vec::with_capacity(n);
        let mut journals = Vec::with_capacity(n);
        let mut cores = Vec::with_capacity(n);
        let seed = u64::from(rand::random::<u32>());
        let mut io_backend = "portable";
        for i in 0..n {
            let dir = shard_dir(&cfg.data_dir, i);
            std::fs::create_dir_all(&dir)?;
            let v = Views::open(&dir, cfg.store, cfg.cache_bytes / n as u64)?;
            let journal_dir = dir.join("journal");
            let journal = JournalWriter::open(JournalConfig {
                dir: journal_dir.clone(),
                segment_bytes_max: cfg.segment_bytes_max,
                io: cfg.journal_io,
            })?;
            io_backend = journal.io_backend_name();
            let mut core = Core::new(i as u32, core_cfg.clone(), 1, seed);
            recover_shard(i, &mut core, &v, &journal, &journal_dir)?;
            views.push(v);
            journals.push(journal);
            cores.push(core);
        }
        let max_product_id = cores.iter().map(Core::max_product_id).max().unwrap_or(0);
        let catalog = Arc::new(SharedCatalog { views: views.clone() });
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::bounded::<Mail>(cfg.mailbox_capacity)).unzip();
        let stats: Vec<Arc<ShardStats>> = (0..n).map(|_| Arc::new(ShardStats::default())).collect();
        let durable: Vec<DurableWatch> = journals.iter().map(JournalWriter::durable_watch).collect();
        let cores_ids = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(n);
        for (i, ((core, journal), inbox)) in cores.into_iter().zip(journals).zip(receivers).enumerate() {
            stats[i].durable_lsn.store(journal.durable_lsn(), Ordering::Relaxed);
            let shard = Shard {
                core,
                journal,
                views: views[i].clone(),
                catalog: catalog.clone(),
                inbox,
                peers: senders.clone(),
                provider_calls: cfg.provider_calls.clone(),
                deliveries: cfg.deliveries.clone(),
                durability: cfg.durability,
                stats: stats[i].clone(),
                tick_interval: Duration::from_millis(100),
            };
            let running = ShardRunning::new(stats[i].clone());
            let pin = cfg.pin_threads.then(|| cores_ids.get(i % cores_ids.len().max(1)).copied()).flatten();
            let handle = std::thread::Builder::new().name(format!("{SHARD_THREAD_PREFIX}{i}")).spawn(move || {
                if let Some(core_id) = pin {
                    core_affinity::set_for_current(core_id);
                }
                let _running = running;
                shard.run();
            })?;
            threads.push(handle);
        }
        let cursors = CursorBook::open(&cfg.data_dir.join("feed-cursors"), n)?;
        let engine = Engine {
            inner: Arc::new(Inner {
                cfg,
                mailboxes: senders,
                views,
                durable,
                stats,
                threads: Mutex::new(threads),
                checkpointer: Mutex::new(None),
                next_product_id: AtomicU64::new(max_product_id + 1),
                closed: AtomicBool::new(false),
                cursors,
                recovery: started.elapsed(),
                io_backend,
            }),
        };
        engine.start_checkpointer();
        tracing::info!(shards = n, recovery_ms = engine.inner.recovery.as_millis() as u64, io = io_backend, "engine open");
        Ok(engine)
    }

    /// Starts the thread that projects buffered writes into the stores every [`PROJECT_EVERY`] and
    /// checkpoints them every `checkpoint_interval`.
    fn start_checkpointer(&self) {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.cfg.checkpoint_interval;
        let handle = std::thread::Builder::new()
            .name("kassa-checkpoint".into())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    std::thread::sleep(PROJECT_EVERY);
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.closed.load(Ordering::Acquire) {
                        return;
                    }
                    // The projector's step: the shards' buffered writes into the stores, one batch each.
                    for (shard, views) in inner.views.iter().enumerate() {
                        if let Err(e) = views.project() {
                            tracing::warn!(shard, error = %e, "moving buffered writes into the stores failed; retrying");
                        }
                    }
                    if last.elapsed() >= interval {
                        Engine { inner }.checkpoint_quietly();
                        last = Instant::now();
                    }
                }
            })
            .expect("spawn checkpointer");
        *self.inner.checkpointer.lock() = Some(handle);
    }

    fn checkpoint_quietly(&self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }

    /// Makes every store durable and lets each shard drop journal segments nobody needs any more; returns
    /// once every running shard has done so. Runs on the checkpointer's thread (or a caller's), never on a
    /// shard, so waiting for a full mailbox here stalls nobody.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut acks = Vec::with_capacity(self.shards());
        let cap = crate::feed::Retention { bytes: self.inner.cfg.feed_retention_bytes, age: self.inner.cfg.feed_retention_age };
        for (i, v) in self.inner.views.iter().enumerate() {
            let lsn = v.catalog.persist()?.min(v.state.persist()?);
            // Read after the persist: a cursor registered meanwhile (a snapshot's pin) is honoured.
            match crate::journal::segment_sizes(&self.shard_dir(i).join("journal")) {
                Ok(segments) => {
                    self.inner.cursors.enforce(i, &segments, lsn + 1, cap);
                }
                Err(e) => tracing::warn!(shard = i, error = %e, "listing journal segments for retention failed"),
            }
            let cursor_min = self.inner.cursors.min(i);
            let (done, ack) = std::sync::mpsc::channel();
            if self.inner.mailboxes[i].send(Mail::Checkpointed { lsn, cursor_min, done }).is_ok() {
                acks.push(ack);
            }
        }
        for ack in acks {
            // A shard that stops meanwhile drops its sender: nothing left to wait for.
            let _ = ack.recv();
        }
        Ok(())
    }

    /// A consistent cut of every shard's journal: the durable LSN of each, read while all of them stand
    /// still (for as long as the slowest takes to reach its mail, about one journal sync). `None` if a
    /// shard has stopped.
    pub(crate) fn consistent_cut(&self) -> Option<Vec<u64>> {
        let n = self.shards();
        let resume = Arc::new(crate::shard::Resume::default());
        let (durable, told) = std::sync::mpsc::channel();
        let mut cut = vec![0; n];
        let mut heard = 0;
        if self.inner.mailboxes.iter().all(|m| m.send(Mail::Cut { durable: durable.clone(), resume: resume.clone() }).is_ok()) {
            drop(durable);
            // A shard that never reaches its mail is not waited for past the guard.
            while let Ok((shard, lsn)) = told.recv_timeout(std::time::Duration::from_secs(30)) {
                cut[shard] = lsn;
                heard += 1;
                if heard == n {
                    break;
                }
            }
        }
        resume.release();
        (heard == n).then_some(cut)
    }

    pub fn info(&self) -> EngineInfo {
        EngineInfo { shards: self.shards(), recovery: self.inner.recovery, io_backend: self.inner.io_backend }
    }

    pub fn shards(&self) -> usize {
        self.inner.mailboxes.len()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn currency(&self) -> Currency {
        self.inner.cfg.currency
    }

    /// Every shard's figures, read now.
    /// Every named feed cursor's position and what it pins, and how many retention has dropped.
    pub fn feed_cursors(&self) -> (Vec<crate::feed::CursorFigures>, u64) {
        self.inner.cursors.figures()
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = EngineStats::read(&self.inner.stats);
        for (figures, views) in stats.shards.iter_mut().zip(&self.inner.views) {
            figures.store_buffered_entries = views.buffered_entries() as u64;
        }
        stats
    }

    pub(crate) fn views(&self) -> &[Views] {
        &self.inner.views
    }

    pub(crate) fn durable_watch(&self, shard: usize) -> DurableWatch {
        self.inner.durable[shard].clone()
    }

    pub(crate) fn cursors(&self) -> &CursorBook {
        &self.inner.cursors
    }

    pub(crate) fn shard_dir(&self, shard: usize) -> PathBuf {
        shard_dir(&self.inner.cfg.data_dir, shard)
    }

    pub fn is_open(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    /// Open and every shard thread running: what `/health/ready` reports.
    pub fn is_ready(&self) -> bool {
        self.is_open() && self.inner.stats.iter().all(|s| s.running.load(Ordering::Acquire))
    }

    fn n(&self) -> u32 {
        self.inner.mailboxes.len() as u32
    }

    /// Which shard owns a command; `None` for commands that go to every shard.
    fn route(&self, request: &Request) -> Result<Option<u32>, EngineError> {
        let n = self.n();
        let c = &request.command;
        if let Some(user) = c.user_id() {
            return Ok(match c {
                Command::MarkAllNotificationsRead { .. } => None,
                _ => Some(shard_of_user(user, n)),
            });
        }
        Ok(Some(match c {
            Command::CreateProduct(_) => unreachable!("product ids are assigned before routing"),
            Command::CreateProductWithId { id, .. } | Command::UpdateProduct { id, .. } | Command::DeleteProduct { id } => {
                shard_of_product(*id, n)
            }
            Command::ProcessPayment { payment_id, .. }
            | Command::CancelPayment { payment_id }
            | Command::RefundPayment { payment_id, .. }
            | Command::RetryPayment { payment_id }
            | Command::UpdatePayment { payment_id, .. }
            | Command::ChargeOutcome { payment_id, .. }
            | Command::RefundOutcome { payment_id, .. } => {
                self.locate(Keyspace::Payments, payment_id).ok_or_else(|| payment_not_found(payment_id))?
            }
            Command::UpdateNotification { id, .. }
            | Command::SendNotification { id }
            | Command::MarkNotificationRead { id }
            | Command::RetryNotification { id }
            | Command::DeliveryOutcome { id, .. } => self.locate(Keyspace::Notifications, id).ok_or_else(|| notification_not_found(id))?,
            Command::DeleteNotification { id } => match self.locate(Keyspace::Notifications, id) {
                Some(s) => s,
                None => return Err(notification_not_found(id)),
            },
            Command::CleanupNotifications => return Ok(None),
            _ => unreachable!("user commands are routed above"),
        }))
    }

    /// Gives a new product its id from the engine-wide sequence (the owner follows from the id). With an
    /// idempotency key the id is the next one owned by the key's shard, so that a retry reaches the shard
    /// that holds the first outcome; the ids skipped are gaps.
    fn assign_product_id(&self, request: &mut Request) {
        let n = u64::from(self.n());
        let next = &self.inner.next_product_id;
        match &mut request.command {
            Command::CreateProduct(input) => {
                let owner = request.idempotency.as_ref().map(|k| fnv1a(format!("{}\0{}", k.scope, k.key).as_bytes()) % n);
                let mut current = next.load(Ordering::Relaxed);
                let id = loop {
                    let id = owner.map_or(current, |owner| current + (owner + n - current % n) % n);
                    match next.compare_exchange_weak(current, id + 1, Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => break id,
                        Err(actual) => current = actual,
                    }
                };
                let input = std::mem::take(input);
                request.command = Command::CreateProductWithId { id, input };
            }
            // Explicit ids (seeding, imports) move the sequence past them.
            Command::CreateProductWithId { id, .. } => {
                next.fetch_max(id.saturating_add(1), Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Finds the shard whose state store holds `id` in `ks`.
    fn locate(&self, ks: Keyspace, id: &str) -> Option<u32> {
        if id.is_empty() || id.len() > 128 {
            return None;
        }
        self.inner.views.iter().position(|v| matches!(v.state.get(ks, id.as_bytes()), Ok(Some(_)))).map(|i| i as u32)
    }

    fn send(&self, shard: u32, request: Request) -> Result<tokio::sync::oneshot::Receiver<Result<Reply, EngineError>>, EngineError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(EngineError::unavailable("engine is shutting down"));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Admission never blocks the caller's runtime: a full mailbox is an answer, not a wait.
        match self.inner.mailboxes[shard as usize].try_send(Mail::Client { request, reply: tx }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                self.inner.stats[shard as usize].overloaded_total.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::overloaded(format!("overloaded: shard {shard} has a full mailbox; retry shortly")))
            }
            Err(TrySendError::Disconnected(_)) => Err(EngineError::unavailable("shard is not running")),
        }
    }

    /// Executes one command and waits for its untyped reply (after it is durable, in sync mode); callers
    /// outside the engine run typed commands (`run`).
    pub(crate) async fn execute(&self, request: impl Into<Request>) -> Result<Reply, EngineError> {
        let mut request = request.into();
        self.assign_product_id(&mut request);
        match self.route(&request)? {
            Some(shard) => {
                let rx = self.send(shard, request)?;
                rx.await.map_err(|_| EngineError::unavailable("shard stopped before answering"))?
            }
            None => {
                let mut receivers = Vec::with_capacity(self.shards());
                for shard in 0..self.n() {
                    receivers.push(self.send(shard, request.clone())?);
                }
                let mut total = 0;
                for rx in receivers {
                    match rx.await.map_err(|_| EngineError::unavailable("shard stopped before answering"))?? {
                        Reply::Count(c) => total += c,
                        other => return Ok(other),
                    }
                }
                Ok(Reply::Count(total))
            }
        }
    }

    /// Runs a typed command and answers with its own type (after it is durable, in sync mode).
    pub async fn run<T: Answer>(&self, cmd: Cmd<T>) -> Result<T, EngineError> {
        let name = cmd.command().name();
        let reply = self.execute(cmd.into_request()).await?;
        typed(name, reply)
    }

    /// `run` for callers without an async runtime (tests, benchmarks, tools).
    pub fn run_blocking<T: Answer>(&self, cmd: Cmd<T>) -> Result<T, EngineError> {
        futures::executor::block_on(self.run(cmd))
    }

    /// Creates one notification per user (each on its owner's shard); failures for single users are
    /// skipped, as the old bulk endpoint did, and the created ones are returned.
    pub async fn bulk_notifications(
        &self,
        user_ids: &[String],
        template: crate::command::NotificationInput,
    ) -> Result<Vec<Notification>, EngineError> {
        // A template the engine would refuse for every user is the caller's error, not N skips.
        if let Some(first) = user_ids.first() {
            let mut probe = template.clone();
            probe.user_id.clone_from(first);
            crate::core::validate_notification(&probe)?;
        }
        let mut receivers = Vec::with_capacity(user_ids.len());
        for user in user_ids {
            let mut input = template.clone();
            input.user_id.clone_from(user);
            let command = Command::CreateNotification(input);
            let shard = shard_of_user(user, self.n());
            receivers.push(self.send(shard, command.into())?);
        }
        let mut created = Vec::with_capacity(receivers.len());
        for rx in receivers {
            if let Ok(Ok(Reply::Notification(n))) = rx.await {
                created.push(n);
            }
        }
        Ok(created)
    }

    /// Reads one payment straight from its owner's store.
    pub fn payment(&self, id: &str) -> Result<Option<Payment>, EngineError> {
        self.read_state(Keyspace::Payments, id, views::decode_payment)
    }

    pub fn notification(&self, id: &str) -> Result<Option<Notification>, EngineError> {
        self.read_state(Keyspace::Notifications, id, views::decode_notification)
    }

    fn read_state<T>(&self, ks: Keyspace, id: &str, decode: fn(&[u8]) -> Result<T, views::DecodeError>) -> Result<Option<T>, EngineError> {
        if id.is_empty() || id.len() > 128 {
            return Ok(None);
        }
        for v in &self.inner.views {
            if let Some(bytes) = v.state.get(ks, id.as_bytes()).map_err(store_error)? {
                return decode(&bytes).map(Some).map_err(store_error);
            }
        }
        Ok(None)
    }

    /// Stops accepting commands, lets every shard make its work durable, checkpoints, joins the threads.
    pub fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut waits = Vec::new();
        for mailbox in &self.inner.mailboxes {
            let (tx, rx) = std::sync::mpsc::channel();
            if mailbox.send(Mail::Shutdown { done: tx }).is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
        for handle in self.inner.threads.lock().drain(..) {
            let _ = handle.join();
        }
        if let Some(handle) = self.inner.checkpointer.lock().take() {
            let _ = handle.join();
        }
        tracing::info!("engine stopped");
    }

    /// Seconds since the last checkpoint of the least recently checkpointed shard (for metrics).
    pub fn checkpoint_age(&self) -> Duration {
        let now = now_micros() as u64;
        let oldest = self.inner.stats.iter().map(|s| s.checkpoint_at_micros.load(Ordering::Relaxed)).min().unwrap_or(0);
        if oldest == 0 { Duration::ZERO } else { Duration::from_micros(now.saturating_sub(oldest)) }
    }
}

/// Reads `KASSA_FAILPOINTS` (`name=actions;name=actions`, fail-rs action syntax such as `2*off->panic`).
#[cfg(feature = "failpoints")]
fn configure_failpoints() {
    let Ok(spec) = std::env::var("KASSA_FAILPOINTS") else { return };
    for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
        match entry.split_once('=') {
            Some((name, actions)) => {
                if let Err(e) = fail::cfg(name.trim(), actions.trim()) {
                    tracing::warn!(entry, error = %e, "ignoring a fail point");
                }
            }
            None => tracing::warn!(entry, "ignoring a fail point without '='"),
        }
    }
}

/// Shard threads' names start with this (`abort_on_shard_panic` recognises them by it).
const SHARD_THREAD_PREFIX: &str = "kassa-shard-";

/// A shard that panicked holds state nobody can trust any more: the process aborts at the panic, before
/// unwinding could answer its waiting clients, so that a supervisor restarts it and recovery runs from
/// the journal. Other threads' panics keep their behaviour (the API turns a handler's into a 500).
fn abort_on_shard_panic() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let thread = std::thread::current();
            if let Some(name) = thread.name().filter(|n| n.starts_with(SHARD_THREAD_PREFIX)) {
                tracing::error!(thread = name, "shard thread panicked; aborting so that recovery runs on restart");
                std::process::abort();
            }
        }));
    });
}

/// Marks a shard as running from before its thread starts until its thread leaves `Shard::run`.
struct ShardRunning(Arc<ShardStats>);

impl ShardRunning {
    fn new(stats: Arc<ShardStats>) -> ShardRunning {
        stats.running.store(true, Ordering::Release);
        ShardRunning(stats)
    }
}

impl Drop for ShardRunning {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

pub(crate) fn store_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::internal(format!("storage error: {e}"))
}

/// How often buffered store writes are moved into the stores: often enough that the buffer stays a few
/// thousand entries under load, rarely enough that each move is one large transaction.
const PROJECT_EVERY: Duration = Duration::from_millis(100);
