//! `kassa-bench`: runs the references and Kassa's workloads and writes `results/<date>.json` plus a table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kassa_bench::bench::{self, BenchConfig};
use kassa_bench::report::{RunResult, render_table, utc_stamp};
use kassa_bench::{BenchError, engine_import, refs, sys};

#[derive(Parser)]
#[command(name = "kassa-bench", about = "Kassa's load generator and same-run references")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything: fdatasync cost, references, Kassa's workloads, ratios.
    Run(Box<RunArgs>),
    /// Serves the `ceiling` reference (used by `run` as a separate process).
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// Also answer this file's bytes on /ceiling/page (the `ceiling_page` reference).
        #[arg(long)]
        page_file: Option<PathBuf>,
    },
    /// Adds the W6 criterion figures to a result file and rewrites its table.
    ImportEngine {
        #[arg(long)]
        criterion_dir: PathBuf,
        #[arg(long)]
        result: PathBuf,
    },
    /// Prints the cost of one fdatasync in a directory.
    Fsync {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        samples: u64,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Tiny sizes and short measurements (about a minute).
    #[arg(long)]
    quick: bool,
    /// The `kassa` binary (default: next to this one).
    #[arg(long)]
    kassa_bin: Option<PathBuf>,
    #[arg(long)]
    connections: Option<usize>,
    /// Measured seconds per workload.
    #[arg(long)]
    duration_s: Option<f64>,
    #[arg(long)]
    warmup_s: Option<f64>,
    #[arg(long)]
    products: Option<usize>,
    /// Users per workload pool.
    #[arg(long)]
    users: Option<usize>,
    /// Kassa's shards; by default what Kassa itself picks for a new data directory (one per two cores).
    #[arg(long)]
    shards: Option<usize>,
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    auth: String,
    /// An extra argument for `kassa serve` (repeatable), e.g. `--kassa-arg=--log-level=warn`.
    #[arg(long = "kassa-arg", allow_hyphen_values = true)]
    kassa_args: Vec<String>,
    #[arg(long)]
    flash_buyers: Option<usize>,
    #[arg(long)]
    flash_rounds: Option<u32>,
    #[arg(long, default_value_t = 100)]
    flash_stock: i64,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[arg(long)]
    fsync_samples: Option<u64>,
    /// Skip the open-loop (half of max throughput) latency runs.
    #[arg(long)]
    no_open_loop: bool,
    /// The scale run: this many products and as many one-line baskets, memory at that size, then W8
    /// (SIGKILL and restart). 0 (the default) skips it; the targets are stated for 1000000.
    #[arg(long, default_value_t = 0)]
    scale: usize,
    /// Skip the gateway layers on/off comparison.
    #[arg(long)]
    no_gateway_cost: bool,
    /// Run only these measurements (comma-separated ids or prefixes: `ceiling,w2_http_uniform,w5,gateway`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Measure only the references (no Kassa needed).
    #[arg(long)]
    references_only: bool,
    #[arg(long, env = "KASSA_PG_URL", default_value = "")]
    pg_url: String,
    #[arg(long, env = "KASSA_REDIS_URL", default_value = "")]
    redis_url: String,
    /// MariaDB for the adapters' run (W9/W10), with PostgreSQL, Redis and Kafka.
    #[arg(long, env = "KASSA_MYSQL_URL", default_value = "")]
    mysql_url: String,
    #[arg(long, env = "KASSA_KAFKA_BROKERS", default_value = "")]
    kafka_brokers: String,
    /// Skip the adapters' run (W9 lag and W10 cost with all four mirrors on).
    #[arg(long)]
    no_adapters: bool,
    /// Where results/<date>.json and .md go.
    #[arg(long, default_value = "results")]
    out_dir: PathBuf,
    /// Scratch space (data directory, logs); a temporary directory by default.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

async fn run(args: RunArgs) -> Result<(), BenchError> {
    let q = args.quick;
    let bench_binary = std::env::current_exe()?;
    let kassa_binary = args.kassa_bin.unwrap_or_else(|| bench_binary.with_file_name("kassa"));
    if !args.references_only && !kassa_binary.exists() {
        return Err(BenchError::Config(format!(
            "no kassa binary at {} (build it: cargo build --release -p kassa, or pass --kassa-bin)",
            kassa_binary.display()
        )));
    }
    let scratch = tempfile::Builder::new().prefix("kassa-bench-").tempdir_in(std::env::temp_dir())?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let command = kassa_bench::report::portable(&std::env::args().collect::<Vec<_>>().join(" "));
    let cfg = BenchConfig {
        kassa_binary,
        bench_binary,
        work_dir,
        connections: args.connections.unwrap_or(if q { 16 } else { 64 }).max(1),
        duration: Duration::from_secs_f64(args.duration_s.unwrap_or(if q { 2.0 } else { 10.0 }).max(0.1)),
        warmup: Duration::from_secs_f64(args.warmup_s.unwrap_or(if q { 0.5 } else { 2.0 }).max(0.0)),
        products: args.products.unwrap_or(if q { 2_000 } else { 100_000 }).max(1),
        users: args.users.unwrap_or(if q { 200 } else { 1_000 }).max(1),
        shards: args.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))).max(1),
        auth: args.auth == "on",
        kassa_args: args.kassa_args.clone(),
        pg_url: args.pg_url,
        redis_url: args.redis_url,
        mariadb_url: args.mysql_url,
        kafka_brokers: args.kafka_brokers,
        adapters: !args.no_adapters,
        flash_buyers: args.flash_buyers.unwrap_or(if q { 150 } else { 500 }).max(1),
        flash_rounds: args.flash_rounds.unwrap_or(if q { 1 } else { 3 }),
        flash_stock: args.flash_stock.max(1),
        request_timeout: Duration::from_millis(args.timeout_ms.max(1)),
        fsync_samples: args.fsync_samples.unwrap_or(if q { 50 } else { 200 }).max(1),
        open_loop: !args.no_open_loop,
        gateway_cost: !args.no_gateway_cost,
        scale: args.scale,
        references_only: args.references_only,
        only: args.only.clone(),
        quick: q,
        command,
    };
    let result = bench::run_all(&cfg).await?;
    std::fs::create_dir_all(&args.out_dir)?;
    let stamp = utc_stamp(result.started_at_us / 1_000_000);
    let json_path = args.out_dir.join(format!("{stamp}.json"));
    write_result(&json_path, &result)?;
    print!("{}", render_table(&result));
    println!("\nresult: {}", json_path.display());
    Ok(())
}

fn write_result(json_path: &std::path::Path, result: &RunResult) -> Result<(), BenchError> {
    result.validate().map_err(BenchError::Config)?;
    std::fs::write(json_path, serde_json::to_string_pretty(result)?)?;
    std::fs::write(json_path.with_extension("md"), render_table(result))?;
    std::fs::write(json_path.with_extension("svg"), kassa_bench::chart::render_svg(result))?;
    Ok(())
}

async fn ceiling(addr: &str, page_file: Option<PathBuf>) -> Result<(), BenchError> {
    let page = page_file.map(std::fs::read).transpose()?.map(bytes::Bytes::from);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ceiling listening http={}", listener.local_addr()?);
    refs::serve_ceiling(listener, page).await?;
    Ok(())
}

fn import_engine(criterion_dir: &std::path::Path, path: &std::path::Path) -> Result<(), BenchError> {
    let mut result: RunResult = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let found = engine_import::import(criterion_dir, &mut result);
    if found == 0 {
        return Err(BenchError::Config(format!("no W6 criterion results under {}", criterion_dir.display())));
    }
    write_result(path, &result)?;
    println!("imported {found} W6 figures into {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::ImportEngine { criterion_dir, result } => import_engine(&criterion_dir, &result),
        Cmd::Fsync { dir, samples } => sys::measure_fdatasync(&dir, samples.max(1), 4096).map_err(BenchError::from).map(|c| {
            println!(
                "fdatasync of a 4096 B append in {}: p50 {} us, p99 {} us, max {} us ({} samples)",
                dir.display(),
                c.p50_us,
                c.p99_us,
                c.max_us,
                c.samples
            );
        }),
        Cmd::Ceiling { addr, page_file } => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(ceiling(&addr, page_file)),
            Err(e) => Err(e.into()),
        },
        Cmd::Run(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(*args)),
            Err(e) => Err(e.into()),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kassa-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
