//! One whole run: fdatasync cost, the references, Kassa's workloads, the ratios and the checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;
use crate::dist::KeyDist;
use crate::grpc::{self, AddItemGrpc, BrowseGrpc, CheckoutGrpc};
use crate::kassa::{self, KassaOptions, KassaProcess};
use crate::load::{self, Mode, Op, RunSpec, RunStats};
use crate::mirrors::{self, AdapterRun, LagSampler, MirrorEstate};
use crate::refs::{self, PgBrowse, PgCheckout, RedisFsync};
use crate::report::{Check, GatewayCost, KassaInfo, Kind, Label, Measurement, RunConfig, RunResult, SCHEMA_VERSION};
use crate::sys::{self, Machine};
use crate::workloads::{self, AddItemHttp, Browse, BrowseHttp, Catalog, CheckoutHttp, FixedGet, HttpTarget, SeedMix, user_slice, users};

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub kassa_binary: PathBuf,
    /// This binary (it serves the ceiling reference as a separate process, like Kassa).
    pub bench_binary: PathBuf,
    pub work_dir: PathBuf,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub products: usize,
    pub users: usize,
    pub shards: usize,
    pub auth: bool,
    /// Further arguments for `kassa serve`.
    pub kassa_args: Vec<String>,
    pub pg_url: String,
    pub redis_url: String,
    /// MariaDB and Kafka, for the adapters' run (W9/W10) beside PostgreSQL and Redis.
    pub mariadb_url: String,
    pub kafka_brokers: String,
    /// Run W9/W10 of the adapters.
    pub adapters: bool,
    pub flash_buyers: usize,
    pub flash_rounds: u32,
    pub flash_stock: i64,
    pub request_timeout: Duration,
    pub fsync_samples: u64,
    pub open_loop: bool,
    pub gateway_cost: bool,
    /// The scale run's size (products and baskets each); 0 skips it.
    pub scale: usize,
    /// Measurement ids to run (`w2_http_uniform`, `ceiling`, `w5`, `gateway`, ...); empty = all.
    pub only: Vec<String>,
    /// Only the references (no Kassa process): measures what this machine allows.
    pub references_only: bool,
    pub quick: bool,
    pub command: String,
}

impl BenchConfig {
    /// Whether measurement `id` is selected by `only` (a prefix selects a family, e.g. `w7`).
    pub fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| id.starts_with(o.as_str()))
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Starts `kassa-bench ceiling` (with `page_file`, also serving `ceiling_page`) and returns it with its
/// address.
async fn start_ceiling(bin: &PathBuf, page_file: Option<&std::path::Path>) -> Result<(Child, SocketAddr), BenchError> {
    let mut cmd = Command::new(bin);
    cmd.args(["ceiling", "--addr", "127.0.0.1:0"]);
    if let Some(page) = page_file {
        cmd.arg("--page-file").arg(page);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Process(format!("ceiling server {}: {e}", bin.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| BenchError::Process("ceiling: no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| BenchError::Process("ceiling server not ready in 10 s".into()))??
        .ok_or_else(|| BenchError::Process("ceiling server exited".into()))?;
    let addr = line
        .trim()
        .strip_prefix("ceiling listening http=")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BenchError::Process(format!("ceiling server said {line:?}")))?;
    Ok((child, addr))
}

/// One round of open-loop runs of W2, W3 and W4 at a share of their closed-loop maximum.
struct OpenRun {
    divisor: f64,
    ids: [&'static str; 3],
    titles: [&'static str; 3],
    /// User pools of the W3 and W4 runs.
    users: [&'static str; 2],
    seed: u64,
}

struct Runner<'a> {
    cfg: &'a BenchConfig,
    result: RunResult,
    /// The Kassa server under load, if any (its RSS is noted after each measurement).
    kassa_pid: Option<u32>,
}

impl Runner<'_> {
    fn spec(&self, mode: Mode) -> RunSpec {
        match mode {
            Mode::Closed => RunSpec::closed(self.cfg.warmup, self.cfg.duration),
            Mode::Open { rate_per_s } => RunSpec::open(rate_per_s, self.cfg.warmup, self.cfg.duration),
        }
    }

    async fn measure<W: Op>(&mut self, label: Label, mode: Mode, workers: Vec<W>) -> RunStats {
        let Label { id, title, unit, .. } = label;
        if !self.cfg.wants(id) {
            return RunStats::default();
        }
        let n = workers.len();
        eprintln!("kassa-bench: {id} ({title}), {n} connections, {:?} ...", self.cfg.duration);
        // The server's CPU over the measured window only (the warm-up excluded), read beside the load.
        // References run in their own processes: Kassa's figures would describe an idle server.
        let kassa_pid = self.kassa_pid.filter(|_| label.kind == Kind::Workload);
        let window = kassa_pid.map(|pid| {
            let (warmup, duration) = (self.cfg.warmup, self.cfg.duration);
            tokio::spawn(async move {
                tokio::time::sleep(warmup).await;
                let before = kassa::cpu_seconds(pid)?;
                tokio::time::sleep(duration).await;
                Some(kassa::cpu_seconds(pid)? - before)
            })
        });
        let stats = load::run(&self.spec(mode), workers).await;
        let mut m = Measurement::from_stats(&label, n, mode, &stats);
        m.kassa_rss_kib_after = kassa_pid.and_then(kassa::rss_kib);
        if let Some(window) = window {
            m.kassa_cpu_s = window.await.ok().flatten();
        }
        eprintln!(
            "kassa-bench: {id}: {:.0} {unit}/s, {:.0} req/s, p99 {:.2} ms, errors {}{}{}",
            m.ops_per_s,
            m.requests_per_s,
            m.latency.p99_us as f64 / 1000.0,
            stats.errors,
            m.kassa_rss_kib_after.map_or(String::new(), |k| format!(", kassa RSS {:.0} MiB", k as f64 / 1024.0)),
            m.kassa_cpu_us_per_op().map_or(String::new(), |us| format!(", kassa CPU {us:.0} us/op"))
        );
        self.result.measurements.push(m);
        stats
    }

    fn rate(&self, id: &str) -> f64 {
        self.result.measurement(id).map_or(0.0, |m| m.ops_per_s)
    }
}

async fn pg_workers_checkout(cfg: &BenchConfig) -> Result<Vec<PgCheckout>, BenchError> {
    let mut v = Vec::with_capacity(cfg.connections);
    for w in 0..cfg.connections {
        v.push(PgCheckout::connect(&cfg.pg_url, format!("pgu_{w}"), cfg.products, w as u64).await?);
    }
    Ok(v)
}

async fn grpc_channels(addr: SocketAddr, cfg: &BenchConfig) -> Result<Vec<tonic::transport::Channel>, BenchError> {
    let mut v = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        v.push(grpc::connect(addr, cfg.request_timeout).await.map_err(|e| BenchError::Process(format!("grpc {addr}: {e}")))?);
    }
    Ok(v)
}

/// The server configuration of a benchmark run. The gateway's default rate limits (100 requests per minute
/// per client, like the old gateway) would turn the load into 429s, so they are raised far beyond the load;
/// the limiter still runs on every request. `layers = false` switches every gateway layer off.
pub fn bench_config_toml(layers: bool) -> String {
    let class = "{ limit = 100000000, window_ms = 1000, burst = 100000000 }";
    let mut text = String::from("[gateway]\n");
    if !layers {
        text.push_str("layers_enabled = false\n");
    }
    text.push_str("\n[gateway.rate_limit]\n");
    for name in ["api", "admin", "health", "default"] {
        text.push_str(&format!("{name} = {class}\n"));
    }
    text
}

/// Starts Kassa with the benchmark configuration; if this build refuses it (no `[gateway]` section yet),
/// starts it with its defaults and says so in the notes.
async fn start_with_bench_config(result: &mut RunResult, mut opts: KassaOptions) -> Result<(KassaProcess, KassaOptions), BenchError> {
    let path = opts.log_file.with_file_name("bench.toml");
    std::fs::write(&path, bench_config_toml(true))?;
    opts.config = Some(path);
    match KassaProcess::start(&opts).await {
        Ok(server) => Ok((server, opts)),
        Err(e) => {
            result.notes.push(format!("kassa refused the benchmark config (rate limits at their defaults): {e}"));
            opts.config = None;
            let server = KassaProcess::start(&opts).await?;
            Ok((server, opts))
        }
    }
}

/// Runs everything and returns the result document (also on partial failure of single workloads: those
/// show as errors in their measurement).
pub async fn run_all(cfg: &BenchConfig) -> Result<RunResult, BenchError> {
    if cfg.pg_url.is_empty() || cfg.redis_url.is_empty() {
        return Err(BenchError::Config(
            "the references need PostgreSQL and Redis: set KASSA_PG_URL and KASSA_REDIS_URL \
             (eval \"$(deploy/local/services.sh up)\")"
                .into(),
        ));
    }
    std::fs::create_dir_all(&cfg.work_dir)?;
    let mut r = Runner {
        cfg,
        result: RunResult {
            schema_version: SCHEMA_VERSION,
            started_at_us: now_us(),
            command: cfg.command.clone(),
            quick: cfg.quick,
            machine: Machine::probe(),
            config: RunConfig {
                connections: cfg.connections,
                duration_s: cfg.duration.as_secs_f64(),
                warmup_s: cfg.warmup.as_secs_f64(),
                products: cfg.products,
                users: cfg.users,
                flash_buyers: cfg.flash_buyers,
                flash_rounds: cfg.flash_rounds,
            },
            ..RunResult::default()
        },
        kassa_pid: None,
    };

    let fsync_dir = cfg.work_dir.clone();
    let samples = cfg.fsync_samples;
    let fsync = tokio::task::spawn_blocking(move || sys::measure_fdatasync(&fsync_dir, samples, 4096))
        .await
        .map_err(|e| BenchError::Process(e.to_string()))??;
    eprintln!("kassa-bench: one fdatasync on {}: p50 {} us, p99 {} us", cfg.work_dir.display(), fsync.p50_us, fsync.p99_us);
    r.result.fdatasync = fsync;

    let conns = cfg.connections;
    // References.
    {
        let (mut ceiling, addr) = start_ceiling(&cfg.bench_binary, None).await?;
        let target = HttpTarget { addr, bearer: None, timeout: cfg.request_timeout };
        let workers = (0..conns).map(|_| FixedGet::new(&target, refs::CEILING_PATH)).collect();
        r.measure(Label::new("ceiling", "minimal axum JSON handler", Kind::Reference, "http", "request"), Mode::Closed, workers).await;
        let _ = ceiling.start_kill();
        let _ = ceiling.wait().await;
    }
    refs::pg_setup(&cfg.pg_url, cfg.products).await?;
    let workers = pg_workers_checkout(cfg).await?;
    r.measure(
        Label::new("pg_checkout", "PostgreSQL checkout transaction", Kind::Reference, "postgres", "transaction"),
        Mode::Closed,
        workers,
    )
    .await;
    let mut workers = Vec::with_capacity(conns);
    for w in 0..conns {
        workers.push(PgBrowse::connect(&cfg.pg_url, cfg.products, w as u64).await?);
    }
    r.measure(Label::new("pg_browse", "PostgreSQL product point select", Kind::Reference, "postgres", "query"), Mode::Closed, workers)
        .await;
    let mut workers = Vec::with_capacity(conns);
    let redis_users = users("ru", cfg.users);
    for w in 0..conns {
        workers.push(RedisFsync::connect(&cfg.redis_url, user_slice(&redis_users, w, conns), cfg.products, w as u64).await?);
    }
    let appendfsync = workers[0].appendfsync().await.unwrap_or_else(|e| format!("unknown ({e})"));
    if appendfsync != "always" {
        r.result.notes.push(format!("the Redis reference runs with appendfsync {appendfsync}, not always"));
    }
    r.measure(Label::new("redis_fsync", "Redis HSET, appendfsync always", Kind::Reference, "redis", "write"), Mode::Closed, workers).await;

    if cfg.references_only {
        r.result.notes.push("references only: Kassa was not started".into());
        finish(&mut r.result);
        r.result.finished_at_us = now_us();
        return Ok(r.result);
    }

    // Kassa.
    let data_dir = cfg.work_dir.join("kassa-data");
    let opts = KassaOptions {
        binary: cfg.kassa_binary.clone(),
        data_dir: data_dir.clone(),
        shards: cfg.shards,
        auth: cfg.auth,
        config: None,
        extra_args: cfg.kassa_args.clone(),
        log_file: cfg.work_dir.join("kassa.log"),
        ready_timeout: Duration::from_secs(120),
    };
    let (server, opts) = start_with_bench_config(&mut r.result, opts).await?;
    let bearer = if cfg.auth { Some(kassa::token(&opts, "admin", "bench").await?) } else { None };
    let target = HttpTarget { addr: server.http, bearer, timeout: cfg.request_timeout };
    r.kassa_pid = Some(server.pid);
    eprintln!("kassa-bench: kassa pid {} on http={} grpc={}; seeding {} products", server.pid, server.http, server.grpc, cfg.products);
    let outcome = kassa_workloads(&mut r, &server, &target).await;
    let peak = server.peak_rss_kib();
    let pid = server.pid;
    if let Err(e) = &outcome {
        eprintln!("kassa-bench: kassa workloads failed: {e}\nlast server log lines:\n{}", server.log_tail(20));
    }
    server.stop(Duration::from_secs(30)).await?;
    r.kassa_pid = None;
    let (catalog, seed_s) = outcome?;
    r.result.kassa = Some(KassaInfo {
        binary: crate::report::portable(&cfg.kassa_binary.display().to_string()),
        pid,
        shards: cfg.shards,
        auth: cfg.auth,
        peak_rss_kib: peak,
        seed_products: cfg.products,
        seed_s,
        seed_products_per_s: if seed_s > 0.0 { cfg.products as f64 / seed_s } else { 0.0 },
    });

    if cfg.gateway_cost && cfg.wants("gateway") {
        gateway_cost(&mut r, &opts, &catalog).await;
    }
    if cfg.adapters && cfg.wants("adapters") {
        let run = adapters_run(&mut r, &opts, &catalog).await;
        r.result.adapters = Some(run);
    }
    if cfg.scale > 0 && cfg.wants("scale") {
        let scale_opts = KassaOptions {
            data_dir: cfg.work_dir.join("kassa-scale-data"),
            log_file: cfg.work_dir.join("kassa-scale.log"),
            ready_timeout: Duration::from_secs(600),
            ..opts.clone()
        };
        match crate::scale::run(&scale_opts, cfg.scale, cfg.connections).await {
            Ok(run) => r.result.scale = Some(run),
            Err(e) => r.result.notes.push(format!("scale run failed: {e}")),
        }
    }
    finish(&mut r.result);
    r.result.finished_at_us = now_us();
    Ok(r.result)
}

async fn kassa_workloads(r: &mut Runner<'_>, server: &KassaProcess, target: &HttpTarget) -> Result<(Catalog, f64), BenchError> {
    let cfg = r.cfg;
    let conns = cfg.connections;
    let (catalog, seed_s) = workloads::seed_products(target, cfg.products, conns).await?;
    eprintln!("kassa-bench: seeded {} products in {seed_s:.1} s", cfg.products);
    if let Some(rss) = kassa::rss_kib(server.pid) {
        r.result.notes.push(format!("kassa RSS after seeding {} products: {:.0} MiB", cfg.products, rss as f64 / 1024.0));
    }
    let w1_users = users("w1u", cfg.users);
    workloads::seed_baskets(target, &w1_users, conns).await?;

    let slice = |all: &[String], w: usize| user_slice(all, w, conns);
    let workers = (0..conns).map(|w| SeedMix::new(target, catalog.clone(), slice(&w1_users, w), w as u64)).collect();
    r.measure(Label::new("w1_http", "W1 seed mix (6 requests)", Kind::Workload, "http", "iteration"), Mode::Closed, workers).await;
    // Browsing is anonymous, as a shop's product pages are (product reads are public); the same with a
    // token shows what verifying it on every request costs.
    let anonymous = HttpTarget { bearer: None, ..target.clone() };
    for (id, title, what, who) in [
        ("w2_http_uniform", "W2 get product, uniform", Browse::ById(KeyDist::Uniform), &anonymous),
        ("w2_http_zipf", "W2 get product, zipfian", Browse::ById(KeyDist::Zipf), &anonymous),
        ("w2_http_category", "W2 list by category (100/category)", Browse::ByCategory, &anonymous),
        ("w2_http_uniform_token", "W2 get product, uniform, with a bearer token", Browse::ById(KeyDist::Uniform), target),
    ] {
        let workers = (0..conns).map(|w| BrowseHttp::new(who, catalog.clone(), what, w as u64)).collect();
        r.measure(Label::new(id, title, Kind::Workload, "http", "request"), Mode::Closed, workers).await;
    }
    if cfg.wants("ceiling_page")
        && let Err(e) = ceiling_page(r, &anonymous).await
    {
        r.result.notes.push(format!("ceiling_page not measured: {e}"));
    }
    let w3_users = users("w3u", cfg.users);
    let workers = (0..conns).map(|w| AddItemHttp::new(target, catalog.clone(), slice(&w3_users, w), w as u64)).collect();
    r.measure(Label::new("w3_http", "W3 add item (durable)", Kind::Workload, "http", "request"), Mode::Closed, workers).await;
    let w4_users = users("w4u", cfg.users);
    let workers = (0..conns).map(|w| CheckoutHttp::new(target, catalog.clone(), slice(&w4_users, w), w as u64)).collect();
    r.measure(Label::new("w4_http", "W4 checkout (add, pay, process)", Kind::Workload, "http", "checkout"), Mode::Closed, workers).await;

    // W7: gRPC.
    match grpc_channels(server.grpc, cfg).await {
        Ok(channels) => {
            let auth = grpc::auth(target.bearer.as_deref());
            let workers = channels
                .iter()
                .enumerate()
                .map(|(w, c)| BrowseGrpc::new(c.clone(), auth.clone(), catalog.clone(), KeyDist::Uniform, w as u64))
                .collect();
            r.measure(Label::new("w7_grpc_browse", "W7 GetProduct, uniform", Kind::Workload, "grpc", "request"), Mode::Closed, workers)
                .await;
            let g3 = users("g3u", cfg.users);
            let workers = channels
                .iter()
                .enumerate()
                .map(|(w, c)| AddItemGrpc::new(c.clone(), auth.clone(), catalog.clone(), slice(&g3, w), w as u64))
                .collect();
            r.measure(Label::new("w7_grpc_add_item", "W7 AddItem (durable)", Kind::Workload, "grpc", "request"), Mode::Closed, workers)
                .await;
            let g4 = users("g4u", cfg.users);
            let workers = channels
                .iter()
                .enumerate()
                .map(|(w, c)| CheckoutGrpc::new(c.clone(), auth.clone(), catalog.clone(), slice(&g4, w), w as u64))
                .collect();
            r.measure(
                Label::new("w7_grpc_checkout", "W7 checkout (AddItem, CreatePayment, ProcessPayment)", Kind::Workload, "grpc", "checkout"),
                Mode::Closed,
                workers,
            )
            .await;
        }
        Err(e) => r.result.notes.push(format!("W7 not measured: {e}")),
    }

    // Open loop at half of the closed-loop maximum (the latency targets), and at a quarter, so the chart
    // shows latency at more than one offered rate. Each run has its own users and seeds.
    if cfg.open_loop {
        let open_runs: [OpenRun; 2] = [
            OpenRun {
                divisor: 2.0,
                ids: ["w2_http_open", "w3_http_open", "w4_http_open"],
                titles: ["W2 get product at half max", "W3 add item at half max", "W4 checkout at half max"],
                users: ["o3u", "o4u"],
                seed: 100,
            },
            OpenRun {
                divisor: 4.0,
                ids: ["w2_http_open_quarter", "w3_http_open_quarter", "w4_http_open_quarter"],
                titles: ["W2 get product at a quarter of max", "W3 add item at a quarter of max", "W4 checkout at a quarter of max"],
                users: ["q3u", "q4u"],
                seed: 200,
            },
        ];
        for run in open_runs {
            let ([w2, w3, w4], [t2, t3, t4]) = (run.ids, run.titles);
            let seed = |w: usize| run.seed + w as u64;
            let rate = r.rate("w2_http_uniform") / run.divisor;
            if rate > 0.0 {
                let workers =
                    (0..conns).map(|w| BrowseHttp::new(&anonymous, catalog.clone(), Browse::ById(KeyDist::Uniform), seed(w))).collect();
                r.measure(Label::new(w2, t2, Kind::Workload, "http", "request"), Mode::Open { rate_per_s: rate }, workers).await;
            }
            let rate = r.rate("w3_http") / run.divisor;
            if rate > 0.0 {
                let pool = users(run.users[0], cfg.users);
                let workers = (0..conns).map(|w| AddItemHttp::new(target, catalog.clone(), slice(&pool, w), seed(w))).collect();
                r.measure(Label::new(w3, t3, Kind::Workload, "http", "request"), Mode::Open { rate_per_s: rate }, workers).await;
            }
            let rate = r.rate("w4_http") / run.divisor;
            if rate > 0.0 {
                let pool = users(run.users[1], cfg.users);
                let workers = (0..conns).map(|w| CheckoutHttp::new(target, catalog.clone(), slice(&pool, w), seed(w))).collect();
                r.measure(Label::new(w4, t4, Kind::Workload, "http", "checkout"), Mode::Open { rate_per_s: rate }, workers).await;
            }
        }
    }

    // W5: flash sale.
    let rounds = if cfg.wants("w5") { cfg.flash_rounds } else { 0 };
    for round in 1..=rounds {
        eprintln!("kassa-bench: W5 flash sale round {round}: {} buyers for {} units", cfg.flash_buyers, cfg.flash_stock);
        match workloads::flash_sale(target, target, round, cfg.flash_stock, cfg.flash_buyers).await {
            Ok(sale) => {
                eprintln!(
                    "kassa-bench: W5 round {round}: sold {}, 409s {}, exact {}, clean {}",
                    sale.sold, sale.rejected_409, sale.exact, sale.clean
                );
                r.result.flash_sales.push(sale);
            }
            Err(e) => r.result.notes.push(format!("W5 round {round} could not run: {e}")),
        }
    }
    Ok((catalog, seed_s))
}

/// The `ceiling_page` reference: the ceiling server answering, as a fixed body, the bytes of one of Kassa's
/// category pages (same size and shape as what `w2_http_category` receives). Measured while Kassa idles.
async fn ceiling_page(r: &mut Runner<'_>, kassa: &HttpTarget) -> Result<(), BenchError> {
    let cfg = r.cfg;
    let path = format!("/api/products/category/{}", workloads::category_name(0));
    let page = kassa.client().get(&path).await.map_err(|e| BenchError::Process(format!("GET {path}: {e}")))?.body;
    let file = cfg.work_dir.join("category-page.json");
    std::fs::write(&file, &page)?;
    let (mut server, addr) = start_ceiling(&cfg.bench_binary, Some(&file)).await?;
    let target = HttpTarget { addr, bearer: None, timeout: cfg.request_timeout };
    let workers = (0..cfg.connections).map(|_| FixedGet::new(&target, refs::CEILING_PAGE_PATH)).collect();
    let what = format!("fixed body of {} B, the bytes of GET {path}", page.len());
    r.measure(
        Label::new("ceiling_page", "minimal axum handler, a category page's body", Kind::Reference, "http", "request"),
        Mode::Closed,
        workers,
    )
    .await;
    r.result.notes.push(format!("ceiling_page: {what}"));
    let _ = server.start_kill();
    let _ = server.wait().await;
    Ok(())
}

/// W2 by id with the gateway layers switched off (`[gateway] layers_enabled = false`), against the same data.
async fn gateway_cost(r: &mut Runner<'_>, opts: &KassaOptions, catalog: &Catalog) {
    let cfg = r.cfg;
    let on = r.rate("w2_http_uniform");
    let config = cfg.work_dir.join("layers-off.toml");
    let mut cost = GatewayCost { layers_on_per_s: on, ..GatewayCost::default() };
    if let Err(e) = std::fs::write(&config, bench_config_toml(false)) {
        cost.note = format!("cannot write {}: {e}", config.display());
        r.result.gateway_cost = Some(cost);
        return;
    }
    let mut off_opts = opts.clone();
    off_opts.config = Some(config);
    off_opts.log_file = cfg.work_dir.join("kassa-layers-off.log");
    off_opts.ready_timeout = Duration::from_secs(60);
    match KassaProcess::start(&off_opts).await {
        Ok(server) => {
            r.kassa_pid = Some(server.pid);
            let target = HttpTarget { addr: server.http, bearer: None, timeout: cfg.request_timeout };
            let workers =
                (0..cfg.connections).map(|w| BrowseHttp::new(&target, catalog.clone(), Browse::ById(KeyDist::Uniform), w as u64)).collect();
            let stats = r
                .measure(
                    Label::new("w2_http_uniform_layers_off", "W2 get product, gateway layers off", Kind::Workload, "http", "request"),
                    Mode::Closed,
                    workers,
                )
                .await;
            let off = stats.ops_per_s();
            if stats.ops_ok == 0 {
                cost.note = format!("layers-off run failed: {}", stats.errors);
            } else {
                cost.layers_off_per_s = Some(off);
                cost.loss = Some(1.0 - on / off);
                cost.note = "same data directory, restarted with --config layers_enabled = false".into();
            }
            let _ = server.stop(Duration::from_secs(30)).await;
            r.kassa_pid = None;
        }
        Err(e) => {
            cost.note = format!("kassa would not start with [gateway] layers_enabled = false (option missing?): {e}");
        }
    }
    r.result.gateway_cost = Some(cost);
}

/// How often the lag sampler reads the adapters' status, and how long it waits for the last samples.
const LAG_POLL: Duration = Duration::from_millis(10);
const LAG_DRAIN: Duration = Duration::from_secs(120);

/// W9 and W10 of the adapters: the run's data directory restarted with all four mirrors on (fresh targets,
/// so they first copy the whole state), then W4 closed loop (what the mirrors cost its throughput) and W4
/// at half of its maximum without them (their lag, the W9 target), each with the lag sampled throughout.
async fn adapters_run(r: &mut Runner<'_>, opts: &KassaOptions, catalog: &Catalog) -> AdapterRun {
    let cfg = r.cfg;
    let mut run = AdapterRun { poll_interval_ms: LAG_POLL.as_secs_f64() * 1000.0, ..AdapterRun::default() };
    if cfg.mariadb_url.is_empty() || cfg.kafka_brokers.is_empty() {
        run.notes.push("not measured: the adapters need KASSA_MYSQL_URL and KASSA_KAFKA_BROKERS beside PostgreSQL and Redis".into());
        return run;
    }
    let tag = crate::report::utc_stamp(now_us() / 1_000_000);
    let estate = match MirrorEstate::fresh(&cfg.pg_url, &cfg.mariadb_url, &cfg.redis_url, &cfg.kafka_brokers, &tag).await {
        Ok(e) => e,
        Err(e) => {
            run.notes.push(format!("not measured: {e}"));
            return run;
        }
    };
    let config = cfg.work_dir.join("adapters.toml");
    if let Err(e) = std::fs::write(&config, bench_config_toml(true) + &estate.toml()) {
        run.notes.push(format!("not measured: cannot write {}: {e}", config.display()));
        return run;
    }
    let mut with = opts.clone();
    with.config = Some(config);
    with.log_file = cfg.work_dir.join("kassa-adapters.log");
    let server = match KassaProcess::start(&with).await {
        Ok(s) => s,
        Err(e) => {
            run.notes.push(format!("not measured: kassa would not start with the adapters: {e}"));
            return run;
        }
    };
    r.kassa_pid = Some(server.pid);
    let bearer = if cfg.auth { kassa::token(&with, "admin", "bench").await.ok() } else { None };
    let target = HttpTarget { addr: server.http, bearer, timeout: cfg.request_timeout };
    if let Err(e) = adapters_measure(r, &mut run, &target, catalog).await {
        run.notes.push(format!("stopped early: {e}; last server log lines:\n{}", server.log_tail(10)));
    }
    let _ = server.stop(Duration::from_secs(30)).await;
    r.kassa_pid = None;
    run
}

async fn adapters_measure(r: &mut Runner<'_>, run: &mut AdapterRun, target: &HttpTarget, catalog: &Catalog) -> Result<(), BenchError> {
    let cfg = r.cfg;
    let conns = cfg.connections;
    let slice = |all: &[String], w: usize| user_slice(all, w, conns);
    let expected = 4;
    let bootstrap = mirrors::caught_up(target, expected, Duration::from_secs(900)).await?;
    run.bootstrap_s = Some(bootstrap.as_secs_f64());
    eprintln!("kassa-bench: adapters caught up with the restarted state in {:.1} s", bootstrap.as_secs_f64());

    let a4 = users("a4u", cfg.users);
    let workers = (0..conns).map(|w| CheckoutHttp::new(target, catalog.clone(), slice(&a4, w), 200 + w as u64)).collect();
    let sampler = LagSampler::start(target, LAG_POLL, LAG_DRAIN);
    let label = Label::new("adapters_w4_http", "W4 checkout, four adapters on", Kind::Workload, "http", "checkout");
    r.measure(label, Mode::Closed, workers).await;
    run.at_max = Some(sampler.finish().await?.figures());

    // Half of W4's maximum without the adapters, as the W9 target is stated (of this run's own maximum
    // with them when W4 alone was not measured).
    let rate = match r.rate("w4_http") {
        max if max > 0.0 => max / 2.0,
        _ => {
            run.notes.push("w4_http not measured: the open-loop rate is half of adapters_w4_http".into());
            r.rate("adapters_w4_http") / 2.0
        }
    };
    if rate > 0.0 {
        mirrors::caught_up(target, expected, LAG_DRAIN).await?;
        let b4 = users("b4u", cfg.users);
        let workers = (0..conns).map(|w| CheckoutHttp::new(target, catalog.clone(), slice(&b4, w), 300 + w as u64)).collect();
        let sampler = LagSampler::start(target, LAG_POLL, LAG_DRAIN);
        let label = Label::new("adapters_w4_http_open", "W4 checkout at half max, four adapters on", Kind::Workload, "http", "checkout");
        r.measure(label, Mode::Open { rate_per_s: rate }, workers).await;
        run.at_half = Some(sampler.finish().await?.figures());
    }

    let mut client = HttpTarget { timeout: Duration::from_secs(900), ..target.clone() }.client();
    let answer = client
        .post_json("/admin/adapters/verify?settle_s=10", "", &[200])
        .await
        .map_err(|e| BenchError::Process(format!("POST /admin/adapters/verify: {e}")))?;
    let verdict: serde_json::Value = crate::http::parse(&answer.body).map_err(|e| BenchError::Process(e.to_string()))?;
    run.verify_clean = verdict["clean"].as_bool();
    run.verify_differences = verdict["differences"].as_u64();
    Ok(())
}

/// Ratios and checks from the measurements.
pub fn finish(r: &mut RunResult) {
    r.ratios.clear();
    r.checks.clear();
    r.add_ratio("W1 requests/s / ceiling", "w1_http", "ceiling", true, Some(0.6));
    r.add_ratio("W2 by id (uniform) / ceiling", "w2_http_uniform", "ceiling", true, Some(0.6));
    r.add_ratio("W2 by id (zipfian) / ceiling", "w2_http_zipf", "ceiling", true, Some(0.6));
    r.add_ratio("W2 by category / ceiling_page", "w2_http_category", "ceiling_page", true, Some(0.6));
    r.add_ratio("W2 by category / ceiling (information)", "w2_http_category", "ceiling", true, None);
    r.add_ratio("W3 add item / redis-fsync", "w3_http", "redis_fsync", false, Some(1.0));
    r.add_ratio("W4 checkouts / pg-checkout", "w4_http", "pg_checkout", false, Some(10.0));
    r.add_ratio("W2 by id / pg-browse (information)", "w2_http_uniform", "pg_browse", false, None);
    r.add_ratio("W2 by id with a token / ceiling (information)", "w2_http_uniform_token", "ceiling", true, None);
    r.add_ratio("W7 GetProduct / ceiling (information)", "w7_grpc_browse", "ceiling", true, None);
    r.add_ratio("W7 AddItem / redis-fsync (information)", "w7_grpc_add_item", "redis_fsync", false, None);
    r.add_ratio("W7 checkouts / pg-checkout (information)", "w7_grpc_checkout", "pg_checkout", false, None);
    r.add_ratio("W4 with the four adapters / W4 without (W10)", "adapters_w4_http", "w4_http", false, None);
    r.ratios.retain(|x| r.measurements.iter().any(|m| m.id == x.numerator) && r.measurements.iter().any(|m| m.id == x.denominator));

    let fsync_ms = r.fdatasync.p50_us as f64 / 1000.0;
    let latency_checks = [
        ("W2 p99 at half of max throughput", "w2_http_open", 2.0),
        ("W3 p99 at half of max throughput", "w3_http_open", 2.0 * fsync_ms + 2.0),
        ("W4 p99 at half of max throughput", "w4_http_open", 2.0 * fsync_ms + 2.0),
    ];
    for (name, id, bound_ms) in latency_checks {
        if let Some(m) = r.measurement(id) {
            let p99_ms = m.latency.p99_us as f64 / 1000.0;
            let service = m.service_latency.map_or(String::new(), |s| format!(", {:.2} ms from actual send", s.p99_us as f64 / 1000.0));
            let check = Check {
                name: name.into(),
                target: format!("p99 <= {bound_ms:.2} ms"),
                measured: format!(
                    "p99 {p99_ms:.2} ms from intended send{service}, at {:.0}/s, {} failed",
                    m.target_rate_per_s.unwrap_or(0.0),
                    m.ops_failed
                ),
                met: Some(p99_ms <= bound_ms && m.ops_failed == 0),
            };
            r.checks.push(check);
        }
    }
    if !r.flash_sales.is_empty() {
        let exact = r.flash_sales.iter().all(|s| s.exact);
        let clean = r.flash_sales.iter().all(|s| s.clean);
        let sold: Vec<String> = r.flash_sales.iter().map(|s| format!("{}/{}", s.sold, s.stock_initial)).collect();
        r.checks.push(Check {
            name: "W5 flash sale".into(),
            target: "exactly the stock sold, every round; failures are clean 409s".into(),
            measured: format!("sold {} in {} rounds; all failures 409: {clean}", sold.join(", "), r.flash_sales.len()),
            met: Some(exact && clean),
        });
    }
    if let Some(g) = &r.gateway_cost {
        r.checks.push(Check {
            name: "gateway cost (W2, layers on vs off)".into(),
            target: "<= 10% throughput loss".into(),
            measured: g.loss.map_or_else(|| g.note.clone(), |l| format!("{:.1}% loss", l * 100.0)),
            met: g.loss.map(|l| l <= 0.10),
        });
    }
    if let Some(f) = r.adapters.as_ref().and_then(|a| a.at_half.as_ref()) {
        let failed = r.measurement("adapters_w4_http_open").map_or(0, |m| m.ops_failed);
        let worst = f
            .adapters
            .iter()
            .max_by_key(|a| a.lag.p99_us)
            .map_or(String::new(), |a| format!(", worst {} at {:.2} ms", a.adapter, a.lag.p99_us as f64 / 1000.0));
        r.checks.push(Check {
            name: "W9 adapter lag at half of W4's max (all four on)".into(),
            target: "p99 <= 1000 ms".into(),
            measured: format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} samples{worst}; {} unresolved, {failed} checkouts failed",
                f.overall.p50_us as f64 / 1000.0,
                f.overall.p99_us as f64 / 1000.0,
                f.overall.max_us as f64 / 1000.0,
                f.overall.count,
                f.unresolved
            ),
            met: Some(f.overall.count > 0 && f.overall.p99_us <= 1_000_000 && f.unresolved == 0 && failed == 0),
        });
    }
    const GIB_KIB: u64 = 1024 * 1024;
    const MILLION: usize = 1_000_000;
    if let Some(s) = &r.scale {
        let at_size = s.products >= MILLION && s.baskets >= MILLION;
        let size = if at_size { String::new() } else { " (below the 1M/1M target size)".to_owned() };
        r.checks.push(Check {
            name: "memory".into(),
            target: "RSS <= 1 GiB with 1M products and 1M baskets".into(),
            measured: format!(
                "RSS {} (peak {}) with {} products and {} baskets{size}",
                crate::report::mib_text(s.rss_kib),
                crate::report::mib_text(s.peak_rss_kib),
                s.products,
                s.baskets
            ),
            met: s.peak_rss_kib.filter(|_| at_size).map(|v| v <= GIB_KIB),
        });
        r.checks.push(Check {
            name: "W8 restart after SIGKILL".into(),
            target: "serving <= 2 s after the restart with 1M products and 1M baskets, nothing acknowledged lost".into(),
            measured: format!(
                "serving after {}{size}; {} of {} sampled baskets intact",
                s.restart_ready_s.map_or_else(|| "never".to_owned(), |v| format!("{v:.2} s")),
                s.verified,
                s.verified_of
            ),
            met: s.restart_ready_s.filter(|_| at_size).map(|v| v <= 2.0 && s.verified == s.verified_of),
        });
    } else if let Some(k) = &r.kassa {
        r.checks.push(Check {
            name: "memory".into(),
            target: "RSS <= 1 GiB with 1M products and 1M baskets".into(),
            measured: format!(
                "peak RSS {} with {} products (not the 1M/1M target size: run with --scale)",
                crate::report::mib_text(k.peak_rss_kib),
                k.seed_products
            ),
            met: None,
        });
    }
}
