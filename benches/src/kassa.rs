//! Starting and stopping the Kassa server under test, and reading its peak memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;

/// How to start one Kassa server.
#[derive(Clone, Debug)]
pub struct KassaOptions {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub auth: bool,
    /// A TOML file passed with `--config` (used to switch the gateway layers off).
    pub config: Option<PathBuf>,
    /// Further arguments for `kassa serve` (e.g. `--log-level=warn`).
    pub extra_args: Vec<String>,
    /// Where the server's stderr goes.
    pub log_file: PathBuf,
    pub ready_timeout: Duration,
}

/// A running server started by the harness.
pub struct KassaProcess {
    child: Child,
    pub pid: u32,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    log_file: PathBuf,
}

/// Parses the server's ready line: `kassa listening http=ADDR grpc=ADDR`.
pub fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("kassa listening")?;
    let mut http = None;
    let mut grpc = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("http=") {
            http = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("grpc=") {
            grpc = v.parse().ok();
        }
    }
    Some((http?, grpc?))
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl KassaProcess {
    pub async fn start(opts: &KassaOptions) -> Result<KassaProcess, BenchError> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&opts.log_file)?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .arg("--shards")
            .arg(opts.shards.to_string())
            .arg("--auth")
            .arg(if opts.auth { "on" } else { "off" })
            // Only the harness's own products: the old system's 10 have tiny stocks that checkouts exhaust.
            .args(["--seed-catalog", "false"]);
        if let Some(config) = &opts.config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(&opts.extra_args);
        // The listen addresses come from the flags only.
        cmd.env_remove("PORT").env_remove("GRPC_PORT");
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).stdin(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| BenchError::Process(format!("cannot start {}: {e}", opts.binary.display())))?;
        let pid = child.id().ok_or_else(|| BenchError::Process("kassa exited at once".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Process("no stdout pipe".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait_ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addrs) = parse_listening_line(&line) {
                    return Ok::<_, std::io::Error>(Some(addrs));
                }
            }
            Ok(None)
        };
        let found = tokio::time::timeout(opts.ready_timeout, wait_ready).await;
        let (http, grpc) = match found {
            Ok(Ok(Some(addrs))) => addrs,
            other => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let why = match other {
                    Err(_) => format!("not ready within {:?}", opts.ready_timeout),
                    Ok(Err(e)) => format!("reading its stdout: {e}"),
                    _ => "exited before printing its listening line".into(),
                };
                return Err(BenchError::Process(format!(
                    "kassa serve {why}; last lines of {}:\n{}",
                    opts.log_file.display(),
                    tail(&opts.log_file, 20)
                )));
            }
        };
        // Keep draining stdout so that a chatty server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(KassaProcess { child, pid, http, grpc, log_file: opts.log_file.clone() })
    }

    /// Peak resident set size (VmHWM) in KiB, while the process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file, lines)
    }

    /// SIGKILL, as a crash: no shutdown work runs.
    pub async fn kill(mut self) -> Result<(), BenchError> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<(), BenchError> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            self.child.start_kill()?;
            self.child.wait().await?;
        }
        Ok(())
    }
}

/// Current VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used so far (user + system, every thread), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The command name
/// (field 2) is parenthesised and may hold spaces, so fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmHWM of a process from /proc/<pid>/status, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Asks the binary for a token: `kassa token --role <role> --subject <subject>` (last non-empty stdout line).
/// `opts` point it at the server's data directory and config, so that it signs with the server's key.
pub async fn token(opts: &KassaOptions, role: &str, subject: &str) -> Result<String, BenchError> {
    let binary = &opts.binary;
    let mut cmd = Command::new(binary);
    cmd.args(["token", "--role", role, "--subject", subject]).arg("--data-dir").arg(&opts.data_dir);
    if let Some(config) = &opts.config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.stdin(Stdio::null()).output().await.map_err(|e| BenchError::Process(format!("kassa token: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Process(format!("kassa token failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Process("kassa token printed nothing".into()))
}
