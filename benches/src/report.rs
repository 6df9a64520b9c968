//! The result of a run: a JSON document (schema below, version [`SCHEMA_VERSION`]) and a readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::hist::LatencySummary;
use crate::load::{Mode, RunStats};
use crate::mirrors::{AdapterRun, LagFigures};
use crate::scale::ScaleRun;
use crate::sys::{FsyncCost, Machine};
use crate::workloads::FlashSale;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Reference,
    Workload,
}

/// One measured load: a reference or a Kassa workload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    /// Stable key, e.g. `ceiling`, `w2_http_uniform`, `w4_http_open`.
    pub id: String,
    pub title: String,
    pub kind: Kind,
    /// `http`, `grpc`, `postgres` or `redis`.
    pub transport: String,
    /// `closed` or `open`.
    pub mode: String,
    pub target_rate_per_s: Option<f64>,
    pub connections: usize,
    pub duration_s: f64,
    /// What one operation is: `request`, `iteration`, `checkout`, `transaction`, `write`.
    pub unit: String,
    pub ops: u64,
    pub ops_failed: u64,
    pub ops_per_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Closed loop: per operation. Open loop: from the intended send time (no coordinated omission).
    pub latency: LatencySummary,
    /// Open loop only: from the actual send.
    pub service_latency: Option<LatencySummary>,
    pub errors: BTreeMap<String, u64>,
    pub error_samples: BTreeMap<String, String>,
    /// Open loop only: due operations never started.
    pub missed: Option<u64>,
    /// Resident set size of the Kassa server right after this measurement (Kassa workloads only).
    #[serde(default)]
    pub kassa_rss_kib_after: Option<u64>,
    /// CPU time (user + system, all threads) the Kassa server spent during the measured window: the
    /// figure the shared machine's noise moves least, per operation in the table.
    #[serde(default)]
    pub kassa_cpu_s: Option<f64>,
}

impl Measurement {
    /// Kassa's CPU per operation in the measured window, microseconds.
    pub fn kassa_cpu_us_per_op(&self) -> Option<f64> {
        self.kassa_cpu_s.filter(|_| self.ops > 0).map(|s| s * 1e6 / self.ops as f64)
    }
}

/// What a measurement is, before it has numbers.
#[derive(Clone, Copy, Debug)]
pub struct Label {
    pub id: &'static str,
    pub title: &'static str,
    pub kind: Kind,
    pub transport: &'static str,
    pub unit: &'static str,
}

impl Label {
    pub const fn new(id: &'static str, title: &'static str, kind: Kind, transport: &'static str, unit: &'static str) -> Label {
        Label { id, title, kind, transport, unit }
    }
}

impl Measurement {
    pub fn from_stats(label: &Label, connections: usize, mode: Mode, stats: &RunStats) -> Measurement {
        let Label { id, title, kind, transport, unit } = *label;
        let (mode_name, rate, service, missed) = match mode {
            Mode::Closed => ("closed", None, None, None),
            Mode::Open { rate_per_s } => ("open", Some(rate_per_s), Some(stats.service.summary()), Some(stats.missed)),
        };
        Measurement {
            id: id.into(),
            title: title.into(),
            kind,
            transport: transport.into(),
            mode: mode_name.into(),
            target_rate_per_s: rate,
            connections,
            duration_s: stats.window_s,
            unit: unit.into(),
            ops: stats.ops_ok,
            ops_failed: stats.ops_failed,
            ops_per_s: stats.ops_per_s(),
            requests: stats.requests,
            requests_per_s: stats.requests_per_s(),
            latency: stats.latencies.summary(),
            service_latency: service,
            errors: stats.errors.counts.clone(),
            error_samples: stats.errors.samples.clone(),
            missed,
            kassa_rss_kib_after: None,
            kassa_cpu_s: None,
        }
    }
}

/// A headline ratio: Kassa's figure over a reference's, with the target of BENCHMARKS.md.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub value: Option<f64>,
    /// The ratio must be at least this.
    pub target_min: Option<f64>,
    pub met: Option<bool>,
}

/// A target that is not a ratio (latency bounds, exact flash sale, gateway cost).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KassaInfo {
    pub binary: String,
    pub pid: u32,
    pub shards: usize,
    pub auth: bool,
    pub peak_rss_kib: Option<u64>,
    pub seed_products: usize,
    pub seed_s: f64,
    pub seed_products_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GatewayCost {
    pub layers_on_per_s: f64,
    pub layers_off_per_s: Option<f64>,
    /// 1 - on/off: the share of throughput the gateway layers cost.
    pub loss: Option<f64>,
    pub note: String,
}

/// A W6 (in-process engine) figure, imported from the criterion run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EngineFigure {
    pub id: String,
    pub ops_per_s: f64,
    pub note: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub connections: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub products: usize,
    pub users: usize,
    pub flash_buyers: usize,
    pub flash_rounds: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub schema_version: u32,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub config: RunConfig,
    pub fdatasync: FsyncCost,
    pub kassa: Option<KassaInfo>,
    pub measurements: Vec<Measurement>,
    pub flash_sales: Vec<FlashSale>,
    pub gateway_cost: Option<GatewayCost>,
    /// W9/W10 of the adapters (absent from results written before they existed).
    #[serde(default)]
    pub adapters: Option<AdapterRun>,
    /// The scale run: memory at N products + N baskets and W8 (restart after SIGKILL), with `--scale N`.
    #[serde(default)]
    pub scale: Option<ScaleRun>,
    pub ratios: Vec<Ratio>,
    pub checks: Vec<Check>,
    pub engine: Vec<EngineFigure>,
    pub notes: Vec<String>,
}

impl RunResult {
    pub fn measurement(&self, id: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.id == id)
    }

    /// Adds `numerator / denominator` (ops/s, or requests/s when `requests` is set) as a ratio.
    pub fn add_ratio(&mut self, name: &str, numerator: &str, denominator: &str, requests: bool, target_min: Option<f64>) {
        let rate = |m: &Measurement| if requests { m.requests_per_s } else { m.ops_per_s };
        let value = match (self.measurement(numerator), self.measurement(denominator)) {
            (Some(n), Some(d)) if rate(d) > 0.0 => Some(rate(n) / rate(d)),
            _ => None,
        };
        let met = match (value, target_min) {
            (Some(v), Some(t)) => Some(v >= t),
            _ => None,
        };
        self.ratios.push(Ratio { name: name.into(), numerator: numerator.into(), denominator: denominator.into(), value, target_min, met });
    }

    /// Checks a document read back from disk for the invariants every writer keeps.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!("schema_version {} (expected {SCHEMA_VERSION})", self.schema_version));
        }
        if self.finished_at_us < self.started_at_us {
            return Err("finished before it started".into());
        }
        for m in &self.measurements {
            if !(m.ops_per_s.is_finite() && m.ops_per_s >= 0.0) {
                return Err(format!("{}: ops_per_s {}", m.id, m.ops_per_s));
            }
            if m.mode != "closed" && m.mode != "open" {
                return Err(format!("{}: mode {}", m.id, m.mode));
            }
            if (m.mode == "open") != m.target_rate_per_s.is_some() {
                return Err(format!("{}: an open-loop run needs its target rate, a closed one none", m.id));
            }
            let l = &m.latency;
            if l.count > 0 && !(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us) {
                return Err(format!("{}: percentiles out of order {l:?}", m.id));
            }
        }
        for r in &self.ratios {
            for id in [&r.numerator, &r.denominator] {
                if self.measurement(id).is_none() {
                    return Err(format!("ratio {} names unknown measurement {id}", r.name));
                }
            }
        }
        Ok(())
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "n/a",
    }
}

/// The human-readable table (markdown, so that BENCHMARKS.md can quote it verbatim).
pub fn render_table(r: &RunResult) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "machine: {} cpus ({}), {:.1} GiB, kernel {}, load {:.2} at start",
        m.nproc,
        m.cpu_model,
        m.mem_total_kib as f64 / 1024.0 / 1024.0,
        m.kernel,
        m.loadavg_1m_at_start
    );
    let f = &r.fdatasync;
    let _ = writeln!(
        out,
        "fdatasync ({} B appends, {} samples): p50 {} ms, p99 {} ms, max {} ms",
        f.bytes_per_write,
        f.samples,
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us)
    );
    if let Some(k) = &r.kassa {
        let rss = k.peak_rss_kib.map_or_else(|| "n/a".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
        let _ = writeln!(
            out,
            "kassa: {} shards, auth {}, peak RSS {rss}, seeded {} products in {:.1} s ({:.0}/s)",
            k.shards,
            if k.auth { "on" } else { "off" },
            k.seed_products,
            k.seed_s,
            k.seed_products_per_s
        );
    }
    let c = &r.config;
    let _ = writeln!(out, "connections {}, duration {} s (+{} s warm-up) per measurement\n", c.connections, c.duration_s, c.warmup_s);
    let _ = writeln!(
        out,
        "| id | what | mode | ops/s | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | kassa RSS MiB | kassa CPU µs/op |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for x in &r.measurements {
        let mode = match x.target_rate_per_s {
            Some(rate) => format!("open @{rate:.0}/s"),
            None => format!("closed x{}", x.connections),
        };
        let mut errors: Vec<String> = x.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(missed) = x.missed.filter(|m| *m > 0) {
            errors.push(format!("missed={missed}"));
        }
        let errors = if errors.is_empty() { "-".to_owned() } else { errors.join(", ") };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} {}/s | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            x.id,
            x.title,
            mode,
            x.ops_per_s,
            x.unit,
            x.requests_per_s,
            ms(x.latency.p50_us),
            ms(x.latency.p99_us),
            ms(x.latency.p999_us),
            ms(x.latency.max_us),
            errors,
            x.kassa_rss_kib_after.map_or_else(|| "-".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
            x.kassa_cpu_us_per_op().map_or_else(|| "-".into(), |us| format!("{us:.0}"))
        );
    }
    if !r.ratios.is_empty() {
        let _ = writeln!(out, "\n| ratio | value | target | met |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        for x in &r.ratios {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                x.name,
                opt_f(x.value, 3),
                x.target_min.map_or("-".into(), |t| format!(">= {t}")),
                yes_no(x.met)
            );
        }
    }
    if !r.checks.is_empty() {
        let _ = writeln!(out, "\n| check | target | measured | met |");
        let _ = writeln!(out, "|---|---|---|---|");
        for x in &r.checks {
            let _ = writeln!(out, "| {} | {} | {} | {} |", x.name, x.target, x.measured, yes_no(x.met));
        }
    }
    if !r.flash_sales.is_empty() {
        let _ = writeln!(
            out,
            "\n| W5 round | buyers | stock | sold | 409s | other failures | stock after | sold field | exact | clean | checkouts/s | p99 ms |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---|---|---:|---:|");
        for s in &r.flash_sales {
            let other: Vec<String> = s.other_failures.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
                s.round,
                s.buyers,
                s.stock_initial,
                s.sold,
                s.rejected_409,
                if other.is_empty() { "-".into() } else { other.join(", ") },
                s.stock_after.map_or("n/a".into(), |v| v.to_string()),
                s.sold_field_after.map_or("n/a".into(), |v| v.to_string()),
                if s.exact { "yes" } else { "NO" },
                if s.clean { "yes" } else { "NO" },
                s.checkouts_per_s,
                ms(s.latency.p99_us)
            );
        }
    }
    if let Some(g) = &r.gateway_cost {
        let _ = writeln!(
            out,
            "\ngateway cost (W2 by id, layers on vs off): on {:.0}/s, off {}, loss {} ({})",
            g.layers_on_per_s,
            opt_f(g.layers_off_per_s, 0),
            g.loss.map_or("n/a".into(), |l| format!("{:.1}%", l * 100.0)),
            g.note
        );
    }
    if let Some(a) = &r.adapters {
        render_adapters(&mut out, a);
    }
    if !r.engine.is_empty() {
        let _ = writeln!(out, "\n| W6 engine (in-process) | ops/s | note |");
        let _ = writeln!(out, "|---|---:|---|");
        for e in &r.engine {
            let _ = writeln!(out, "| {} | {:.0} | {} |", e.id, e.ops_per_s, e.note);
        }
    }
    if let Some(s) = &r.scale {
        render_scale(&mut out, s);
    }
    for n in &r.notes {
        let _ = writeln!(out, "\nnote: {n}");
    }
    out
}

/// A size in KiB as MiB for the table, or `n/a`.
pub fn mib_text(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0))
}

fn render_scale(out: &mut String, s: &ScaleRun) {
    let _ = writeln!(
        out,
        "\nscale run: {} products seeded in {:.0} s, {} one-line baskets in {:.0} s; RSS {} (peak {}), data directory {:.0} MiB",
        s.products,
        s.seed_products_s,
        s.baskets,
        s.seed_baskets_s,
        mib_text(s.rss_kib),
        mib_text(s.peak_rss_kib),
        s.data_dir_bytes as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(
        out,
        "W8 after SIGKILL: serving {} after the restart began (engine recovery {}), RSS then {}; {} of {} sampled baskets intact",
        s.restart_ready_s.map_or_else(|| "never".to_owned(), |v| format!("{v:.2} s")),
        s.recovery_ms.map_or_else(|| "n/a".to_owned(), |v| format!("{v} ms")),
        mib_text(s.rss_after_restart_kib),
        s.verified,
        s.verified_of
    );
    for n in &s.notes {
        let _ = writeln!(out, "\nscale note: {n}");
    }
}

fn render_adapters(out: &mut String, a: &AdapterRun) {
    let _ = writeln!(
        out,
        "\nadapters (all four on, same data directory restarted): bootstrap to caught up {}, verify after the load: {}",
        a.bootstrap_s.map_or_else(|| "not reached".to_owned(), |s| format!("{s:.1} s")),
        match (a.verify_clean, a.verify_differences) {
            (Some(true), _) => "clean".to_owned(),
            (Some(false), d) => format!("{} differences", d.map_or("some".into(), |d| d.to_string())),
            (None, _) => "not run".to_owned(),
        }
    );
    let _ = writeln!(
        out,
        "\n| adapter lag (engine commit to target commit, status read every {:.0} ms) | adapter | samples | p50 ms | p99 ms | p99.9 ms | max ms | unresolved |",
        a.poll_interval_ms
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = |what: &str, f: &LagFigures| {
        let all = std::iter::once(("all", &f.overall, f.unresolved));
        for (name, lag, unresolved) in all.chain(f.adapters.iter().map(|x| (x.adapter.as_str(), &x.lag, x.unresolved))) {
            let _ = writeln!(
                out,
                "| {what} | {name} | {} | {} | {} | {} | {} | {unresolved} |",
                lag.count,
                ms(lag.p50_us),
                ms(lag.p99_us),
                ms(lag.p999_us),
                ms(lag.max_us)
            );
        }
    };
    if let Some(f) = &a.at_half {
        rows("W4 at half of max", f);
    }
    if let Some(f) = &a.at_max {
        rows("W4 closed loop (max)", f);
    }
    for n in &a.notes {
        let _ = writeln!(out, "\nadapters note: {n}");
    }
}

/// `text` with the build cache's and the working directory's paths written as `$CARGO_TARGET_DIR/` and
/// relative paths, so a result committed to the repository names no machine's directories.
pub fn portable(text: &str) -> String {
    let target = std::env::var("CARGO_TARGET_DIR").ok();
    let cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
    portable_with(text, target.as_deref(), cwd.as_deref())
}

pub fn portable_with(text: &str, target_dir: Option<&str>, cwd: Option<&str>) -> String {
    let mut out = text.to_owned();
    if let Some(t) = target_dir.filter(|t| t.starts_with('/')) {
        out = out.replace(&format!("{}/", t.trim_end_matches('/')), "$CARGO_TARGET_DIR/");
    }
    if let Some(c) = cwd.filter(|c| c.starts_with('/') && *c != "/") {
        out = out.replace(&format!("{}/", c.trim_end_matches('/')), "");
    }
    out
}

/// `YYYY-MM-DDTHH-MM-SSZ` for a Unix time (UTC), safe in file names.
pub fn utc_stamp(secs: i64) -> String {
    kassa_engine::time::file_stamp(secs)
}
