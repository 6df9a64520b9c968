//! `kassa`: one binary that runs the whole commerce estate (engine, HTTP API, gRPC API).
//!
//! Structure: `main` parses the command line and loads the one [`config::Config`]; `serve` opens the
//! engine, seeds the catalog, builds the routers with [`http_app`] / [`grpc_app`] (the places where
//! gateway layers wrap the API), starts one listener per core for each protocol, prints the bound
//! addresses, and on SIGTERM/SIGINT stops the listeners (in-flight requests finish) and then the engine.

mod config;
mod seed;

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
#[command(
    name = "kassa",
    version,
    about = "Kassa: one binary that runs a whole commerce estate"
)]
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(o) => Config::load(&o)
            .map_err(anyhow::Error::from)
            .and_then(|cfg| {
                init_logging(&cfg)?;
                serve(cfg)
            }),
        Cmd::Config(o) => Config::load(&o)
            .map_err(anyhow::Error::from)
            .and_then(|cfg| {
                println!(
                    "{}",
                    toml::to_string_pretty(&cfg).context("config cannot be shown as TOML")?
                );
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

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("invalid log level {:?}", cfg.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("logging could not be set up: {e}"))
}

/// The HTTP application served on every HTTP listener.
fn http_app(engine: &Engine, cfg: &Config) -> Router {
    kassa_api::http_router(engine.clone(), cfg.api.clone())
}

/// The gRPC application served on every gRPC listener.
fn grpc_app(engine: &Engine, _cfg: &Config) -> Router {
    kassa_api::grpc_router(engine.clone())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let engine = Engine::open(cfg.engine_config())
        .with_context(|| format!("cannot open the engine in {}", cfg.data_dir.display()))?;
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
    let cfg = Arc::new(cfg);
    let http_factory: RouterFactory = {
        let (engine, cfg) = (engine.clone(), cfg.clone());
        Arc::new(move || http_app(&engine, &cfg))
    };
    let grpc_factory: RouterFactory = {
        let (engine, cfg) = (engine.clone(), cfg.clone());
        Arc::new(move || grpc_app(&engine, &cfg))
    };
    let http = match Listeners::start(cfg.http, cores, http_factory) {
        Ok(l) => l,
        Err(e) => {
            engine.shutdown();
            return Err(e.into());
        }
    };
    let grpc = match Listeners::start(cfg.grpc, cores, grpc_factory) {
        Ok(l) => l,
        Err(e) => {
            http.shutdown(Duration::ZERO);
            engine.shutdown();
            return Err(e.into());
        }
    };
    println!(
        "kassa listening http={} grpc={}",
        http.local_addr(),
        grpc.local_addr()
    );
    let _ = std::io::stdout().flush();
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), listeners = cores, auth = ?cfg.auth, "serving");

    match wait_for_signal() {
        Ok(signal) => tracing::info!(signal, "shutting down"),
        Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
    }
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    http.shutdown(grace);
    grpc.shutdown(grace);
    engine.shutdown();
    Ok(())
}

/// Blocks until SIGTERM or SIGINT; returns the signal's name.
fn wait_for_signal() -> anyhow::Result<&'static str> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
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
