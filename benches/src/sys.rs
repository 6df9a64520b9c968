//! The machine the run happened on, and the cost of one `fdatasync` on the data directory's disk.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::hist::Latencies;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub cpu_model: String,
    /// 1-minute load average when the run started (other jobs sharing the machine show here).
    pub loadavg_1m_at_start: f64,
}

impl Machine {
    pub fn probe() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_kib,
            kernel,
            cpu_model,
            loadavg_1m_at_start: loadavg_1m(),
        }
    }
}

pub fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(0.0)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FsyncCost {
    pub samples: u64,
    pub bytes_per_write: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

/// Appends `bytes` and calls `fdatasync` (`File::sync_data`), `samples` times, in a scratch file under
/// `dir` — the journal's pattern — and reports the time of each sync.
pub fn measure_fdatasync(dir: &Path, samples: u64, bytes: usize) -> std::io::Result<FsyncCost> {
    let scratch = tempfile::NamedTempFile::new_in(dir)?;
    let mut file = scratch.as_file();
    let block = vec![0x5a_u8; bytes];
    let mut lat = Latencies::new();
    for _ in 0..samples {
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data()?;
        lat.record(t.elapsed());
    }
    let s = lat.summary();
    Ok(FsyncCost { samples, bytes_per_write: bytes as u64, p50_us: s.p50_us, p99_us: s.p99_us, max_us: s.max_us, mean_us: s.mean_us })
}
