//! `kassa backup`, `kassa restore` and `kassa verify-backup`: an online backup of a running node fetched
//! over its admin API, checked, and restored into a new data directory. Progress is a bar with counts and
//! rate on a terminal, a plain line every few seconds otherwise.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::{Config, Overrides};

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The node's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin token (see `kassa token --role admin`).
    #[arg(long, env = "KASSA_TOKEN")]
    token: Option<String>,
    /// The directory to write the backup into (must not exist).
    dest: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A backup directory written by `kassa backup`.
    src: PathBuf,
    /// The data directory, the stores and the journal settings to restore into (`--data-dir` is
    /// required: a restore never writes into a default location by accident).
    #[command(flatten)]
    common: Overrides,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A backup directory written by `kassa backup`.
    src: PathBuf,
}

/// Counts shown as they grow: a bar on a terminal, a line every five seconds elsewhere.
struct Progress {
    what: &'static str,
    unit: &'static str,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(what: &'static str, unit: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            let style = format!("{{spinner}} {what}: {{pos}} {unit} ({{per_sec}}, {{elapsed}})");
            bar.set_style(indicatif::ProgressStyle::with_template(&style).expect("a valid template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { what, unit, bar, started: Instant::now(), last_line: Instant::now() }
    }

    fn set(&mut self, n: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(n),
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                eprintln!("{}: {n} {} ({:.0}/s)", self.what, self.unit, n as f64 / self.started.elapsed().as_secs_f64().max(1e-3));
            }
            None => {}
        }
    }

    fn done(self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{}: {n} {} in {:.1} s", self.what, self.unit, self.started.elapsed().as_secs_f64());
    }
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.dest.exists(), "{} exists already", args.dest.display());
    let url = format!("{}/admin/backup", args.url.trim_end_matches('/'));
    let (reader, mut writer) = std::io::pipe()?;
    let dest = args.dest.clone();
    // The archive is unpacked as it arrives; the manifest is its last file, so a cut stream leaves an
    // unfinished backup that the check below refuses.
    let unpacker = std::thread::spawn(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dest)?;
        tar::Archive::new(reader).unpack(&dest)
    });
    let mut progress = Progress::new("received", "bytes");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let fetched: anyhow::Result<u64> = runtime.block_on(async {
        let mut req = reqwest::Client::new().post(&url);
        if let Some(token) = &args.token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!("{url} answered {status}: {body}");
        }
        let mut received = 0u64;
        while let Some(chunk) = resp.chunk().await.with_context(|| format!("{url}: the backup stream broke off"))? {
            std::io::Write::write_all(&mut writer, &chunk).context("writing the backup")?;
            received += chunk.len() as u64;
            progress.set(received);
        }
        Ok(received)
    });
    drop(writer);
    let unpacked = match unpacker.join() {
        Ok(result) => result.with_context(|| format!("unpacking into {}", args.dest.display())),
        Err(_) => Err(anyhow::anyhow!("the unpacking thread panicked")),
    };
    let received = fetched.and_then(|received| unpacked.map(|()| received)).inspect_err(|_| {
        // Nothing usable arrived: leave no directory behind, so the same command can be run again.
        let _ = std::fs::remove_dir_all(&args.dest);
    })?;
    progress.done(received);
    verify(&args.dest)?;
    Ok(())
}

fn verify(src: &Path) -> anyhow::Result<kassa_engine::BackupManifest> {
    let mut progress = Progress::new("checked", "records");
    let mut seen = 0;
    let manifest = kassa_engine::verify_backup(src, &mut |n| {
        seen = n;
        progress.set(n);
    })?;
    progress.done(seen);
    for part in &manifest.shards {
        eprintln!(
            "shard {}: snapshot at lsn {}, journal to lsn {} (durable at the start: {})",
            part.shard, part.snapshot_lsn, part.tail_end, part.durable_at_start
        );
    }
    Ok(manifest)
}

pub fn verify_backup(args: VerifyArgs) -> anyhow::Result<()> {
    verify(&args.src)?;
    println!("{}: a complete backup, every file and record as its manifest says", args.src.display());
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.common.data_dir.is_some(), "--data-dir is required");
    let cfg = Config::load(&args.common)?;
    let mut progress = Progress::new("restored", "records");
    let mut seen = 0;
    let manifest = kassa_engine::restore(&args.src, &cfg.engine_config(), &mut |n| {
        seen = n;
        progress.set(n);
    })?;
    progress.done(seen);
    println!("restored {} shards into {}", manifest.shards.len(), cfg.data_dir.display());
    Ok(())
}
