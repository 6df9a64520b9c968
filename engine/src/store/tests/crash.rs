//! Real crash test: the test binary re-executes itself as a child that applies batches,
//! checkpoints at known LSNs and keeps applying; the parent SIGKILLs it mid-stream and reopens
//! the store. Everything up to the last reported checkpoint must be there, and the data must
//! match the applied LSN exactly.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::{Keyspace, Lsn, Store, StoreError, WriteBatch, open_fjall, open_redb};

const ROLE_ENV: &str = "KASSA_STORE_CRASH_CHILD_DIR";
const CACHE_BYTES: u64 = 8 << 20;
/// Keys older than this many LSNs are deleted, so the check covers deletes too.
const WINDOW: u64 = 5;
const PERSIST_EVERY: u64 = 300;
/// Upper bound on the child's work; the parent kills it long before.
const CHILD_MAX_LSN: u64 = 5_000_000;

fn open(kind: &str, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match kind {
        "fjall" => open_fjall(&dir.join("fjall"), CACHE_BYTES),
        _ => open_redb(&dir.join("store.redb"), CACHE_BYTES),
    }
}

/// Batch `lsn`: put key `lsn` (with a value derived from it), delete key `lsn - WINDOW`, and
/// set the counter. A state at applied LSN `l` holds exactly keys `l-WINDOW+1 ..= l`.
fn batch(lsn: Lsn) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(Keyspace::Payments, &lsn.to_be_bytes(), &value(lsn));
    if lsn > WINDOW {
        b.delete(Keyspace::Payments, &(lsn - WINDOW).to_be_bytes());
    }
    b.put(Keyspace::Meta, b"counter", &lsn.to_be_bytes());
    b
}

fn value(lsn: Lsn) -> Vec<u8> {
    let mut v = lsn.to_le_bytes().repeat(25);
    v.push((lsn % 251) as u8);
    v
}

fn child(kind: &str, dir: &Path) -> ! {
    let store = open(kind, dir).expect("child open");
    let mut out = std::io::stdout().lock();
    for lsn in 1..=CHILD_MAX_LSN {
        store.apply(&batch(lsn), lsn).expect("child apply");
        if lsn % PERSIST_EVERY == 0 {
            let durable = store.persist().expect("child persist");
            writeln!(out, "PERSISTED {durable}").expect("stdout");
            out.flush().expect("flush");
        }
    }
    std::process::exit(0);
}

fn run_parent(kind: &str, test_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let persisted = crash_once(dir.path(), test_name, round);
        let store = open(kind, dir.path()).expect("reopen after kill");
        let applied = store.applied_lsn().expect("lsn");
        eprintln!("{kind} round {round}: persisted {persisted}, reopened at {applied}");
        assert!(applied >= persisted, "{kind}: applied {applied} < persisted {persisted}");
        assert_state(&*store, applied);
        // The next child run (the next "process restart") continues from here; replay is
        // simulated by re-applying from 1, which must be a no-op up to `applied`.
        for lsn in 1..=applied.min(50) {
            store.apply(&batch(lsn), lsn).expect("replay");
        }
        assert_eq!(store.applied_lsn().expect("lsn"), applied);
        assert_state(&*store, applied);
        drop(store);
    }
}

fn assert_state(store: &dyn Store, applied: Lsn) {
    assert!(applied > 0);
    assert_eq!(store.get(Keyspace::Meta, b"counter").expect("get"), Some(applied.to_be_bytes().to_vec()));
    let want: Vec<(Vec<u8>, Vec<u8>)> =
        (applied.saturating_sub(WINDOW) + 1..=applied).map(|l| (l.to_be_bytes().to_vec(), value(l))).collect();
    let mut got = Vec::new();
    store
        .for_each(Keyspace::Payments, &mut |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            got.len() < 1000
        })
        .expect("for_each");
    assert_eq!(got, want, "data does not match applied LSN {applied}");
}

/// Starts a child on `dir`, waits for a few checkpoints, SIGKILLs it while it keeps applying,
/// and returns the last LSN it reported durable.
fn crash_once(dir: &Path, test_name: &str, round: u32) -> Lsn {
    let exe: PathBuf = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([&test_path(test_name), "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut persisted = 0;
    let mut seen = 0u32;
    // Kill at a different point each round, always between checkpoints or during one.
    let wanted = 2 + round * 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Keep the pipe open until the child is dead, so it is killed by the signal and not by a
    // broken pipe right after its next checkpoint.
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("read child stdout") == 0 {
            break;
        }
        if let Some(n) = line.strip_prefix("PERSISTED ") {
            persisted = n.trim().parse().expect("lsn");
            seen += 1;
            if seen >= wanted || Instant::now() > deadline {
                break;
            }
        }
    }
    // Let it run on past the checkpoint so there is unpersisted work to lose.
    std::thread::sleep(Duration::from_millis(20 + 15 * u64::from(round)));
    child.kill().expect("SIGKILL child");
    let status = child.wait().expect("wait child");
    drop(reader);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "child was not killed by SIGKILL: {status:?}");
    assert!(seen >= wanted, "child stopped before {wanted} checkpoints");
    persisted
}

/// The harness's name of a test in this module (its path without the crate's name).
fn test_path(name: &str) -> String {
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
    format!("{module}::{name}")
}

fn role() -> Option<PathBuf> {
    std::env::var_os(ROLE_ENV).map(PathBuf::from)
}

#[test]
fn kill_9_keeps_persisted_lsn_fjall() {
    match role() {
        Some(dir) => child("fjall", &dir),
        None => run_parent("fjall", "kill_9_keeps_persisted_lsn_fjall"),
    }
}

#[test]
fn kill_9_keeps_persisted_lsn_redb() {
    match role() {
        Some(dir) => child("redb", &dir),
        None => run_parent("redb", "kill_9_keeps_persisted_lsn_redb"),
    }
}
