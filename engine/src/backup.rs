//! Online backups: a consistent copy of every shard taken while writes go on, checked and restored
//! without the node that took it.
//!
//! A backup is a directory. Per shard it holds the two stores' records as one snapshot saw them
//! (`catalog.kv`, `state.kv`, at the snapshot's LSN) and the journal's events after that snapshot up to
//! a consistent cut of all shards taken after every snapshot (`tail.journal`), so every write
//! acknowledged before the backup started is in it, each event is whole, and no shard holds the answer
//! to a message another shard's part does not hold the sending of (`Engine::consistent_cut`). `MANIFEST.json` is written
//! last, with each file's size, record count and CRC-32C: a backup without it is incomplete. Restoring
//! writes the records into new stores, starts a journal that continues at the snapshot's LSN with the
//! tail, and lets the engine's own recovery replay it — the same path as after a crash.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineConfig};
use crate::event::{EVENT_KIND, EVENT_SCHEMA, Event};
use crate::journal::{JournalConfig, JournalWriter};
use crate::store::{Keyspace, Store, StoreSnapshot, WriteBatch};
use crate::views::{self, Views};

const FORMAT: u32 = 1;
const MANIFEST: &str = "MANIFEST.json";
const KV_MAGIC: &[u8; 8] = b"KASSAKV\x01";
const TAIL_MAGIC: &[u8; 8] = b"KASSATL\x01";
/// Records per store write while restoring: bounded memory whatever the backup's size.
const RESTORE_CHUNK: usize = 4096;

/// What a backup holds, written last into it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: u32,
    /// The record schema of the stores' records and the tail's events.
    pub record_schema: u16,
    pub kassa_version: String,
    pub taken_at_micros: i64,
    pub shards: Vec<ShardPart>,
}

/// One shard's part of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPart {
    pub shard: usize,
    /// The LSN the store snapshot reflects (both stores).
    pub snapshot_lsn: u64,
    /// The shard's durable LSN when the backup started: everything acknowledged before it is covered.
    pub durable_at_start: u64,
    /// The last LSN of the tail (the tail holds `snapshot_lsn + 1 ..= tail_end`).
    pub tail_end: u64,
    pub files: Vec<FileSum>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub name: String,
    pub bytes: u64,
    pub records: u64,
    pub crc32c: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Engine(String),
    /// The backup's bytes are not what its manifest says, or do not decode.
    #[error("damaged backup: {0}")]
    Damaged(String),
    #[error("{0}")]
    Refused(String),
}

fn engine_error(e: impl std::fmt::Display) -> BackupError {
    BackupError::Engine(e.to_string())
}

/// Records written so far, for a progress display.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

impl Engine {
    /// Takes an online backup into `dest` (a directory that must not exist yet), writes going on meanwhile.
    pub fn backup(&self, dest: &Path, progress: Progress) -> Result<BackupManifest, BackupError> {
        if dest.exists() {
            return Err(BackupError::Refused(format!("{} exists already", dest.display())));
        }
        std::fs::create_dir_all(dest)?;
        let durable_at_start: Vec<u64> = (0..self.shards()).map(|s| self.durable_watch(s).get()).collect();
        let taken_at_micros = crate::model::now_micros();
        // Holds each shard's journal from its snapshot on until the tail is copied.
        let pin = format!("backup-{taken_at_micros}");
        let mut written = 0u64;
        let parts = self.backup_shards(dest, &durable_at_start, &pin, &mut written, progress);
        self.cursors().remove(&pin).map_err(engine_error)?;
        let shards = parts?;
        let manifest = BackupManifest {
            format: FORMAT,
            record_schema: EVENT_SCHEMA,
            kassa_version: env!("CARGO_PKG_VERSION").to_string(),
            taken_at_micros,
            shards,
        };
        let path = dest.join(MANIFEST);
        let mut file = File::create(&path)?;
        file.write_all(&serde_json::to_vec_pretty(&manifest).map_err(engine_error)?)?;
        file.sync_all()?;
        File::open(dest)?.sync_all()?;
        Ok(manifest)
    }

    /// Every shard's snapshot first (each pins its journal), then one cut of all shards after them, then
    /// each shard's records and its journal up to the cut.
    fn backup_shards(
        &self,
        dest: &Path,
        durable_at_start: &[u64],
        pin: &str,
        written: &mut u64,
        progress: Progress,
    ) -> Result<Vec<ShardPart>, BackupError> {
        let snapshots = (0..self.shards()).map(|s| self.snapshot(s, Some(pin))).collect::<Result<Vec<_>, _>>().map_err(engine_error)?;
        let cut = self.consistent_cut().ok_or_else(|| BackupError::Engine("a shard stopped during the backup".into()))?;
        let mut parts = Vec::with_capacity(snapshots.len());
        for (shard, (snapshot, end)) in snapshots.into_iter().zip(cut).enumerate() {
            parts.push(self.backup_shard(dest, snapshot, durable_at_start[shard], end, written, progress)?);
        }
        Ok(parts)
    }

    fn backup_shard(
        &self,
        dest: &Path,
        snapshot: crate::snapshot::ShardSnapshot,
        durable_at_start: u64,
        end: u64,
        written: &mut u64,
        progress: Progress,
    ) -> Result<ShardPart, BackupError> {
        let shard = snapshot.shard();
        let dir = dest.join(shard_name(shard));
        std::fs::create_dir_all(&dir)?;
        let snapshot_lsn = snapshot.lsn();
        let mut files = Vec::with_capacity(3);
        for (name, store) in [("catalog.kv", &snapshot.catalog), ("state.kv", &snapshot.state)] {
            files.push(write_kv(&dir, name, &**store, written, progress)?);
        }
        drop(snapshot);
        // The cut comes after the start and after the snapshot, so it covers both.
        debug_assert!(end >= durable_at_start && end >= snapshot_lsn);
        let mut feed = self.subscribe(shard, snapshot_lsn + 1).map_err(engine_error)?;
        let mut tail = SumWriter::create(&dir.join("tail.journal"), TAIL_MAGIC)?;
        while feed.position() <= end {
            let Some(record) = feed.next_timeout(std::time::Duration::from_secs(1)).map_err(engine_error)? else { continue };
            if record.lsn > end {
                break;
            }
            let payload = record.event.encode();
            tail.write(&record.lsn.to_le_bytes())?;
            tail.write(&(payload.len() as u32).to_le_bytes())?;
            tail.write(&payload)?;
            tail.records += 1;
            *written += 1;
            progress(*written);
        }
        files.push(tail.finish("tail.journal")?);
        Ok(ShardPart { shard, snapshot_lsn, durable_at_start, tail_end: end, files })
    }
}

fn shard_name(shard: usize) -> String {
    format!("shard-{shard:03}")
}

fn write_kv(dir: &Path, name: &str, store: &dyn StoreSnapshot, written: &mut u64, progress: Progress) -> Result<FileSum, BackupError> {
    let mut out = SumWriter::create(&dir.join(name), KV_MAGIC)?;
    let mut failure = None;
    for (index, ks) in Keyspace::ALL.iter().enumerate() {
        store
            .for_each(*ks, &mut |key, value| {
                let frame = [&[index as u8][..], &(key.len() as u32).to_le_bytes(), &(value.len() as u32).to_le_bytes(), key, value];
                match frame.iter().try_for_each(|part| out.write(part)) {
                    Ok(()) => {
                        out.records += 1;
                        *written += 1;
                        progress(*written);
                        true
                    }
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })
            .map_err(engine_error)?;
        if let Some(e) = failure.take() {
            return Err(e.into());
        }
    }
    out.finish(name)
}

/// A file written with its size, record count and CRC-32C kept as it goes.
struct SumWriter {
    out: BufWriter<File>,
    bytes: u64,
    records: u64,
    crc: u32,
}

impl SumWriter {
    fn create(path: &Path, magic: &[u8; 8]) -> std::io::Result<SumWriter> {
        let mut w = SumWriter { out: BufWriter::with_capacity(1 << 20, File::create_new(path)?), bytes: 0, records: 0, crc: 0 };
        w.write(magic)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn finish(self, name: &str) -> Result<FileSum, BackupError> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(FileSum { name: name.to_string(), bytes: self.bytes, records: self.records, crc32c: self.crc })
    }
}

/// Reads a backup file back, checking its magic, and at the end its size and CRC against the manifest.
struct SumReader {
    input: BufReader<File>,
    sum: FileSum,
    bytes: u64,
    crc: u32,
    path: PathBuf,
}

impl SumReader {
    fn open(dir: &Path, part: &ShardPart, name: &str, magic: &[u8; 8]) -> Result<SumReader, BackupError> {
        let sum = part.files.iter().find(|f| f.name == name).cloned();
        let sum = sum.ok_or_else(|| BackupError::Damaged(format!("the manifest lists no {name} for shard {}", part.shard)))?;
        let path = dir.join(shard_name(part.shard)).join(name);
        let mut r = SumReader { input: BufReader::with_capacity(1 << 20, File::open(&path)?), sum, bytes: 0, crc: 0, path };
        let mut head = [0u8; 8];
        if !r.read_exact_or_end(&mut head)? || &head != magic {
            return Err(r.damaged("not a Kassa backup file"));
        }
        Ok(r)
    }

    fn damaged(&self, why: &str) -> BackupError {
        BackupError::Damaged(format!("{}: {why}", self.path.display()))
    }

    /// Fills `buf`; false at a clean end of the file (nothing read).
    fn read_exact_or_end(&mut self, buf: &mut [u8]) -> Result<bool, BackupError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.input.read(&mut buf[filled..])?;
            if n == 0 {
                return if filled == 0 { Ok(false) } else { Err(self.damaged("cut short in a record")) };
            }
            filled += n;
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += buf.len() as u64;
        if self.bytes > self.sum.bytes {
            return Err(self.damaged("longer than its manifest says"));
        }
        Ok(true)
    }

    fn bytes(&mut self, len: usize) -> Result<Vec<u8>, BackupError> {
        let mut buf = vec![0u8; len];
        if len > 0 && !self.read_exact_or_end(&mut buf)? {
            return Err(self.damaged("cut short in a record"));
        }
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("four bytes")))
    }

    fn end(self, records: u64) -> Result<(), BackupError> {
        if self.bytes != self.sum.bytes || self.crc != self.sum.crc32c {
            return Err(self.damaged("its bytes differ from the manifest's size or CRC-32C"));
        }
        if records != self.sum.records {
            return Err(self.damaged(&format!("{records} records, the manifest says {}", self.sum.records)));
        }
        Ok(())
    }
}

/// One record of a `.kv` file.
struct KvRecord {
    ks: Keyspace,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn next_kv(r: &mut SumReader) -> Result<Option<KvRecord>, BackupError> {
    let mut index = [0u8; 1];
    if !r.read_exact_or_end(&mut index)? {
        return Ok(None);
    }
    let ks = *Keyspace::ALL.get(usize::from(index[0])).ok_or_else(|| r.damaged("an unknown keyspace"))?;
    let (key_len, value_len) = (r.u32()? as usize, r.u32()? as usize);
    if key_len == 0 || key_len > crate::store::MAX_KEY_BYTES || value_len > crate::journal::format::PAYLOAD_BYTES_MAX {
        return Err(r.damaged("a record of impossible size"));
    }
    Ok(Some(KvRecord { ks, key: r.bytes(key_len)?, value: r.bytes(value_len)? }))
}

/// Entity records must decode; index and meta entries are plain bytes.
fn check_record(r: &SumReader, rec: &KvRecord) -> Result<(), BackupError> {
    let v = &rec.value;
    let decoded = match rec.ks {
        Keyspace::Products => views::decode_product(v).map(drop),
        Keyspace::Reservations => views::decode_reservation(v).map(drop),
        Keyspace::Baskets => views::decode_basket(v).map(drop),
        Keyspace::Payments => views::decode_payment(v).map(drop),
        Keyspace::Notifications => views::decode_notification(v).map(drop),
        Keyspace::Idempotency => views::decode_idempotency(v).map(drop),
        Keyspace::Wallets => views::decode_wallet(v).map(drop),
        _ => Ok(()),
    };
    decoded.map_err(|e| r.damaged(&e.to_string()))
}

fn next_event(r: &mut SumReader) -> Result<Option<(u64, Vec<u8>)>, BackupError> {
    let mut lsn = [0u8; 8];
    if !r.read_exact_or_end(&mut lsn)? {
        return Ok(None);
    }
    let len = r.u32()? as usize;
    if len > crate::journal::format::PAYLOAD_BYTES_MAX {
        return Err(r.damaged("an event of impossible size"));
    }
    Ok(Some((u64::from_le_bytes(lsn), r.bytes(len)?)))
}

fn decode_event(r: &SumReader, payload: &[u8]) -> Result<Event, BackupError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    Event::decode(&aligned).map_err(|e| r.damaged(&format!("an undecodable event: {e}")))
}

fn read_manifest(src: &Path) -> Result<BackupManifest, BackupError> {
    let text = match std::fs::read(src.join(MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Damaged(format!("{} has no {MANIFEST}: not a backup, or one that did not finish", src.display())));
        }
        Err(e) => return Err(e.into()),
    };
    let manifest: BackupManifest = serde_json::from_slice(&text).map_err(|e| BackupError::Damaged(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Refused(format!("backup format {} (this build reads {FORMAT})", manifest.format)));
    }
    if manifest.record_schema != EVENT_SCHEMA {
        return Err(BackupError::Refused(format!("records of schema {} (this build writes {EVENT_SCHEMA})", manifest.record_schema)));
    }
    if manifest.shards.is_empty() || manifest.shards.iter().enumerate().any(|(i, p)| p.shard != i) {
        return Err(BackupError::Damaged(format!("{MANIFEST}: the shards are not 0..n")));
    }
    Ok(manifest)
}

/// Checks a backup without restoring it: every file's size and CRC-32C against the manifest, every record
/// and event decoded, the tail's LSNs contiguous from the snapshot on and covering the start.
pub fn verify_backup(src: &Path, progress: Progress) -> Result<BackupManifest, BackupError> {
    let manifest = read_manifest(src)?;
    let mut seen = 0u64;
    for part in &manifest.shards {
        for name in ["catalog.kv", "state.kv"] {
            let mut r = SumReader::open(src, part, name, KV_MAGIC)?;
            let mut records = 0;
            while let Some(rec) = next_kv(&mut r)? {
                check_record(&r, &rec)?;
                records += 1;
                seen += 1;
                progress(seen);
            }
            r.end(records)?;
        }
        let mut r = SumReader::open(src, part, "tail.journal", TAIL_MAGIC)?;
        let mut expected = part.snapshot_lsn + 1;
        while let Some((lsn, payload)) = next_event(&mut r)? {
            if lsn != expected {
                return Err(r.damaged(&format!("event {lsn} where {expected} belongs")));
            }
            decode_event(&r, &payload)?;
            expected += 1;
            seen += 1;
            progress(seen);
        }
        if expected - 1 != part.tail_end || part.tail_end < part.durable_at_start {
            return Err(r.damaged(&format!("the tail ends at {} (the manifest: {})", expected - 1, part.tail_end)));
        }
        r.end(expected - 1 - part.snapshot_lsn)?;
    }
    Ok(manifest)
}

/// Restores a checked backup into `cfg.data_dir`, which must not exist or be empty; the stores are the ones
/// `cfg` chooses (a backup holds records, not store files). Written beside it first and renamed into
/// place, so an interrupted restore leaves no half a data directory behind.
pub fn restore(src: &Path, cfg: &EngineConfig, progress: Progress) -> Result<BackupManifest, BackupError> {
    let manifest = verify_backup(src, &mut |_| {})?;
    let target = &cfg.data_dir;
    if std::fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::Refused(format!("{} is not empty", target.display())));
    }
    let mut staging = target.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let shards = manifest.shards.len();
    std::fs::write(staging.join("SHARDS"), format!("{shards}\n"))?;
    let mut seen = 0u64;
    for part in &manifest.shards {
        let dir = staging.join(shard_name(part.shard));
        std::fs::create_dir_all(&dir)?;
        let views = Views::open(&dir, cfg.store, cfg.cache_bytes / shards as u64).map_err(engine_error)?;
        for (name, store) in [("catalog.kv", &views.catalog), ("state.kv", &views.state)] {
            let mut r = SumReader::open(src, part, name, KV_MAGIC)?;
            let mut batch = WriteBatch::with_capacity(RESTORE_CHUNK);
            while let Some(rec) = next_kv(&mut r)? {
                batch.put(rec.ks, &rec.key, &rec.value);
                seen += 1;
                progress(seen);
                if batch.len() == RESTORE_CHUNK {
                    store.rewrite(&batch).map_err(engine_error)?;
                    batch.clear();
                }
            }
            store.rewrite(&batch).map_err(engine_error)?;
            store_at(&**store, part.snapshot_lsn)?;
        }
        views.project().map_err(engine_error)?;
        for store in [&views.catalog, &views.state] {
            store.persist().map_err(engine_error)?;
        }
        drop(views);
        // The journal continues where the snapshot stands; recovery replays the tail into the stores.
        let journal_dir = dir.join("journal");
        crate::journal::start_empty_at(&journal_dir, part.snapshot_lsn + 1).map_err(engine_error)?;
        let mut journal =
            JournalWriter::open(JournalConfig { dir: journal_dir, segment_bytes_max: cfg.segment_bytes_max, io: cfg.journal_io })
                .map_err(engine_error)?;
        let mut r = SumReader::open(src, part, "tail.journal", TAIL_MAGIC)?;
        while let Some((lsn, payload)) = next_event(&mut r)? {
            let written = journal.try_append(EVENT_KIND, EVENT_SCHEMA, &payload).map_err(engine_error)?;
            debug_assert_eq!(written, lsn, "verified contiguous");
            if journal.pending_bytes() >= 1 << 20 {
                journal.sync_all().map_err(engine_error)?;
            }
            seen += 1;
            progress(seen);
        }
        journal.sync_all().map_err(engine_error)?;
    }
    crate::journal::sync_path(&staging)?;
    if target.exists() {
        std::fs::remove_dir(target)?;
    }
    std::fs::rename(&staging, target)?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::journal::sync_path(parent)?;
    }
    Ok(manifest)
}

/// Marks a store as applied up to `lsn` with nothing more written.
fn store_at(store: &dyn Store, lsn: u64) -> Result<(), BackupError> {
    if lsn > 0 {
        store.apply(&WriteBatch::new(), lsn).map_err(engine_error)?;
    }
    Ok(())
}
