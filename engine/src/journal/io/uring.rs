//! io_uring backend: a thread running a tokio-uring runtime; every write and fdatasync is a ring operation.

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::bounded;
use tokio_uring::fs::File;

use super::{Batch, IoChannels, NewSegment};

// Only one operation is in flight at a time; a small ring is plenty.
const RING_ENTRIES: u32 = 8;

/// Builds a runtime and completes a no-op on it: fails on ENOSYS, EPERM (seccomp,
/// `kernel.io_uring_disabled`) or a missing kernel feature.
fn setup() -> io::Result<tokio_uring::Runtime> {
    let mut builder = tokio_uring::builder();
    builder.entries(RING_ENTRIES);
    let runtime = tokio_uring::Runtime::new(&builder)?;
    runtime.block_on(tokio_uring::no_op())?;
    Ok(runtime)
}

pub(super) fn probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("journal-uring-probe".to_owned())
        .spawn(|| setup().map(drop))?
        .join()
        .map_err(|_| io::Error::other("io_uring probe thread panicked"))?
}

pub(super) fn spawn(active: Option<PathBuf>, channels: IoChannels) -> io::Result<JoinHandle<()>> {
    let (setup_tx, setup_rx) = bounded::<io::Result<()>>(1);
    let handle = std::thread::Builder::new().name("journal-uring".to_owned()).spawn(move || {
        // The runtime is thread-bound, so it must be built on the thread that uses it.
        let runtime = match setup() {
            Ok(runtime) => runtime,
            Err(err) => {
                let _ = setup_tx.send(Err(err));
                return;
            }
        };
        let file = match active.map(|path| OpenOptions::new().write(true).open(path)).transpose() {
            Ok(file) => file.map(File::from_std),
            Err(err) => {
                let _ = setup_tx.send(Err(err));
                return;
            }
        };
        if setup_tx.send(Ok(())).is_ok() {
            runtime.block_on(run(file, channels));
        }
    })?;
    let setup_result = setup_rx.recv().unwrap_or_else(|_| Err(io::Error::other("io_uring thread died during setup")));
    match setup_result {
        Ok(()) => Ok(handle),
        Err(err) => {
            // The thread has already returned (or panicked); joining only reaps it.
            let _ = handle.join();
            Err(err)
        }
    }
}

async fn run(mut file: Option<File>, channels: IoChannels) {
    // Blocking in `recv` is fine: this runtime has no other task and nothing is in flight while it waits.
    // Ends when the writer drops its sender; one pass per batch.
    while let Ok(batch) = channels.batches.recv() {
        let Batch { new_segment, offset, bytes, last_lsn } = batch;
        let (result, bytes) = write_batch(&mut file, new_segment, offset, bytes).await;
        channels.recycle(bytes);
        if channels.completions.send(result.map(|()| last_lsn)).is_err() {
            break;
        }
    }
}

async fn write_batch(file: &mut Option<File>, new_segment: Option<NewSegment>, offset: u64, bytes: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    if let Some(new_segment) = new_segment {
        match create_segment(&new_segment).await {
            Ok(created) => *file = Some(created),
            Err(err) => return (Err(err), bytes),
        }
    }
    let Some(file) = file.as_ref() else {
        let err = io::Error::other("journal batch without an active segment");
        return (Err(err), bytes);
    };
    let (result, bytes) = file.write_all_at(bytes, offset).await;
    if let Err(err) = result {
        return (Err(err), bytes);
    }
    (file.sync_data().await, bytes)
}

async fn create_segment(new_segment: &NewSegment) -> io::Result<File> {
    let file = File::from_std(OpenOptions::new().write(true).create_new(true).open(&new_segment.path)?);
    let (result, _) = file.write_all_at(new_segment.header.to_vec(), 0).await;
    result?;
    file.sync_all().await?;
    let dir = File::from_std(std::fs::File::open(&new_segment.dir)?);
    dir.sync_all().await?;
    Ok(file)
}
