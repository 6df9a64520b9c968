//! `kassa`: one binary that runs the whole commerce estate (engine, HTTP API, gRPC API).
//!
//! Structure: `main` parses the command line and loads the one [`config::Config`]; `serve` opens the
//! engine, seeds the catalog, builds the API routers with [`http_app`] / [`grpc_app`], wraps them once in
//! the built-in gateway (`kassa_gateway::embedded`: auth, rate limits, CORS, metrics, health), starts one
//! listener per core for each protocol, prints the bound addresses, and on SIGTERM/SIGINT stops the
//! listeners (in-flight requests finish) and then the engine. `kassa gateway` runs only the gateway in
//! front of remote nodes; `kassa token` prints a signed access token.

mod adapters_cli;
mod backup_cli;
mod config;
mod seed;

/// glibc malloc was ~45% of the write path's CPU in a profile; mimalloc doubled durable commands/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use config::{Config, LogFormat, Overrides};
use kassa_api::Router;
use kassa_engine::Engine;
use kassa_gateway::{Listeners, RouterFactory};

#[derive(Parser)]
#[command(name = "kassa", version, about = "Kassa: one binary that runs a whole commerce estate")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine with the HTTP and gRPC APIs.
    Serve(Overrides),
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config(Overrides),
    /// Run only the gateway, in front of remote Kassa nodes (writes to the primary, reads spread).
    Gateway(GatewayArgs),
    /// Print a signed access token (same keys as `serve`: `[gateway.auth]`, or `<data_dir>/jwt.secret`).
    Token(TokenArgs),
    /// The mirrors into PostgreSQL, MariaDB, Redis and Kafka: schema, status, verify.
    #[command(subcommand)]
    Adapters(adapters_cli::AdaptersCmd),
    /// Take an online backup of a running node into a new directory, and check it.
    Backup(backup_cli::BackupArgs),
    /// Restore a backup into a new data directory.
    Restore(backup_cli::RestoreArgs),
    /// Check a backup: every file's size and CRC, every record and event.
    VerifyBackup(backup_cli::VerifyArgs),
}

#[derive(clap::Args)]
struct GatewayArgs {
    #[command(flatten)]
    common: Overrides,
    /// An upstream node: `http://HOST:PORT[,grpc=http://HOST:PORT][,weight=N][,primary]`. Repeatable;
    /// the first is the primary unless one is marked. Replaces `[gateway] upstreams`.
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// round_robin, least_connections or weighted_round_robin.
    #[arg(long, value_name = "STRATEGY")]
    strategy: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    common: Overrides,
    /// user or admin.
    #[arg(long, default_value = "user")]
    role: String,
    /// The token's subject (user name).
    #[arg(long)]
    subject: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(o) => Config::load(&o).map_err(anyhow::Error::from).and_then(|cfg| {
            let _flush_on_exit = init_logging(&cfg)?;
            serve(cfg)
        }),
        Cmd::Gateway(args) => Config::load(&args.common).map_err(anyhow::Error::from).and_then(|cfg| {
            let _flush_on_exit = init_logging(&cfg)?;
            gateway(cfg, &args.upstreams, args.strategy.as_deref())
        }),
        Cmd::Token(args) => Config::load(&args.common).map_err(anyhow::Error::from).and_then(|cfg| {
            let role = kassa_gateway::Role::parse(&args.role).ok_or_else(|| anyhow::anyhow!("--role must be user or admin"))?;
            let token = kassa_gateway::issue_token(&cfg.gateway_config(), role, &args.subject)?;
            println!("{token}");
            Ok(())
        }),
        Cmd::Adapters(cmd) => match adapters_cli::run(cmd) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Cmd::Backup(args) => backup_cli::backup(args),
        Cmd::Restore(args) => backup_cli::restore(args),
        Cmd::VerifyBackup(args) => backup_cli::verify_backup(args),
        Cmd::Config(o) => Config::load(&o).map_err(anyhow::Error::from).and_then(|cfg| {
            println!("{}", toml::to_string_pretty(&cfg).context("config cannot be shown as TOML")?);
            Ok(())
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kassa: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a background writer: one line per request was ~12% of the server's CPU when
/// every line was a locked write on the request's thread. Not lossy: a full buffer slows callers down
/// rather than dropping lines. The returned guard flushes what is buffered when it is dropped.
fn init_logging(cfg: &Config) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cfg.log.level).with_context(|| format!("invalid log level {:?}", cfg.log.level))?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("logging could not be set up: {e}"))?;
    Ok(guard)
}

/// The HTTP application served on every HTTP listener, taking the payment providers' webhooks.
fn http_app(engine: &Engine, cfg: &Config, payments: &Arc<kassa_providers::Payments>) -> Router {
    let payments = payments.clone();
    let webhooks: kassa_api::Webhooks = Arc::new(move |provider, headers, body| payments.webhook(provider, headers, body));
    kassa_api::http_router_with(engine.clone(), cfg.api.clone(), Some(webhooks))
}

/// The gRPC application served on every gRPC listener.
fn grpc_app(engine: &Engine, _cfg: &Config) -> Router {
    kassa_api::grpc_router(engine.clone())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    // The shards release provider calls into this channel; the provider runner started below drains it.
    let (calls, intake) = kassa_providers::channel();
    // Likewise delivery attempts, drained by the delivery runner.
    let (deliveries, delivery_intake) = kassa_delivery::channel();
    let mut engine_cfg = cfg.engine_config();
    engine_cfg.provider_calls = Some(calls);
    engine_cfg.deliveries = Some(deliveries);
    let engine = Engine::open(engine_cfg).with_context(|| format!("cannot open the engine in {}", cfg.data_dir.display()))?;
    kassa_gateway::clear_unsent_backups(&cfg.data_dir);
    let info = engine.info();
    tracing::info!(shards = info.shards, recovery_ms = info.recovery.as_millis() as u64, io = info.io_backend, data_dir = %cfg.data_dir.display(), "engine open");
    if cfg.seed_catalog {
        match seed::seed_if_empty(&engine) {
            Ok(0) => {}
            Ok(n) => tracing::info!(products = n, "seeded the catalog"),
            Err(e) => {
                engine.shutdown();
                return Err(anyhow::anyhow!("seeding the catalog failed: {e}"));
            }
        }
    }
    let cores = cfg.listener_threads();
    // The mirrors run on their own runtime; a target that is down only delays its own mirror.
    let adapters = match kassa_adapters::start(&engine, &cfg.data_dir, &cfg.adapters) {
        Ok(adapters) => Arc::new(adapters),
        Err(e) => {
            engine.shutdown();
            return Err(anyhow::anyhow!("cannot start the adapters: {e}"));
        }
    };
    if !adapters.is_empty() {
        tracing::info!(adapters = ?adapters.names(), "adapters started");
    }
    let mut payments_cfg = cfg.payments.clone();
    payments_cfg.apply_env();
    let payments = match kassa_providers::start(intake, &payments_cfg, engine.clone()) {
        Ok(payments) => Arc::new(payments),
        Err(e) => {
            adapters.stop(Duration::from_secs(5));
            engine.shutdown();
            return Err(anyhow::anyhow!("cannot start the payment providers: {e}"));
        }
    };
    let mut notifications_cfg = cfg.notifications.clone();
    notifications_cfg.apply_env();
    let render: kassa_delivery::Render = Arc::new(kassa_api::notification_json);
    let deliveries = match kassa_delivery::start(delivery_intake, &notifications_cfg, render, engine.clone()) {
        Ok(deliveries) => deliveries,
        Err(e) => {
            payments.stop();
            adapters.stop(Duration::from_secs(5));
            engine.shutdown();
            return Err(anyhow::anyhow!("cannot start the notification senders: {e}"));
        }
    };
    let stop_all = |adapters: &kassa_adapters::Adapters| {
        // Charges still in flight stay `processing` and are asked again at the next start; delivery
        // attempts in flight are made again.
        payments.stop();
        deliveries.stop();
        adapters.stop(Duration::from_secs(5));
        engine.shutdown();
    };
    // The gateway is built once (one user directory, one rate-limit table); every core serves a clone.
    let gateway_cfg = cfg.gateway_config();
    let front = match kassa_gateway::embedded_with(
        http_app(&engine, &cfg, &payments),
        grpc_app(&engine, &cfg),
        engine.clone(),
        Some(adapters.clone()),
        vec![
            Box::new(kassa_providers::ProviderCollector(payments.metrics())),
            Box::new(kassa_delivery::DeliveryCollector(deliveries.metrics())),
        ],
        &gateway_cfg,
    ) {
        Ok(front) => front,
        Err(e) => {
            stop_all(&adapters);
            return Err(e.into());
        }
    };
    let http_factory: RouterFactory = {
        let router = front.http.clone();
        Arc::new(move || router.clone())
    };
    let grpc_factory: RouterFactory = {
        let router = front.grpc.clone();
        Arc::new(move || router.clone())
    };
    let tls = match cfg.gateway_config().load_tls() {
        Ok(tls) => tls,
        Err(e) => {
            stop_all(&adapters);
            return Err(e.into());
        }
    };
    let http = match Listeners::start_with(cfg.http, cores, http_factory, tls.clone()) {
        Ok(l) => l,
        Err(e) => {
            stop_all(&adapters);
            return Err(e.into());
        }
    };
    let grpc = match Listeners::start_with(cfg.grpc, cores, grpc_factory, tls) {
        Ok(l) => l,
        Err(e) => {
            http.shutdown(Duration::ZERO);
            stop_all(&adapters);
            return Err(e.into());
        }
    };
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), listeners = cores, auth = ?cfg.auth, "serving");
    serve_until_signal(http, grpc, "", Duration::from_millis(cfg.shutdown_grace_ms));
    stop_all(&adapters);
    Ok(())
}

/// Prints the bound addresses (operators and tests read this line), serves until SIGTERM/SIGINT, then
/// stops both listeners, letting in-flight requests finish within `grace`.
fn serve_until_signal(http: Listeners, grpc: Listeners, suffix: &str, grace: Duration) {
    println!("kassa listening http={} grpc={}{suffix}", http.local_addr(), grpc.local_addr());
    let _ = std::io::stdout().flush();
    // systemd (Type=notify) starts what depends on Kassa only now, with both listeners taking connections.
    let status = format!("serving http={} grpc={}", http.local_addr(), grpc.local_addr());
    notify_service_manager(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    match wait_for_signal() {
        Ok(signal) => tracing::info!(signal, "shutting down"),
        Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
    }
    notify_service_manager(&[sd_notify::NotifyState::Stopping]);
    http.shutdown(grace);
    grpc.shutdown(grace);
}

/// Tells the service manager (systemd's `$NOTIFY_SOCKET`, when set) how the service stands.
fn notify_service_manager(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// `kassa gateway`: the gateway's layers in front of remote nodes; no engine in this process.
fn gateway(cfg: Config, upstreams: &[String], strategy: Option<&str>) -> anyhow::Result<()> {
    let mut g = cfg.gateway_config();
    if !upstreams.is_empty() {
        g.upstreams = upstreams.iter().map(|u| kassa_gateway::UpstreamConfig::parse(u)).collect::<Result<_, _>>()?;
    }
    if let Some(name) = strategy {
        g.strategy = name.parse()?;
    }
    let front = kassa_gateway::standalone(&g)?;
    let cores = cfg.listener_threads();
    let serve_front = |router: Router| -> RouterFactory { Arc::new(move || router.clone()) };
    let tls = g.load_tls()?;
    let http = Listeners::start_with(cfg.http, cores, serve_front(front.http.clone()), tls.clone())?;
    let grpc = match Listeners::start_with(cfg.grpc, cores, serve_front(front.grpc.clone()), tls) {
        Ok(l) => l,
        Err(e) => {
            http.shutdown(Duration::ZERO);
            return Err(e.into());
        }
    };
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), upstreams = g.upstreams.len(), strategy = g.strategy.name(), "gateway serving");
    serve_until_signal(http, grpc, " mode=gateway", Duration::from_millis(cfg.shutdown_grace_ms));
    Ok(())
}

/// Blocks until SIGTERM or SIGINT; returns the signal's name.
fn wait_for_signal() -> anyhow::Result<&'static str> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("signal runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    })
}
