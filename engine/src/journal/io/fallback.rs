//! Portable backend: `std::fs::File` writes and `sync_data` (fdatasync) on a helper thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;

use super::{Batch, IoChannels, NewSegment};
use crate::journal::segment::sync_dir;

pub(super) fn spawn(active: Option<PathBuf>, channels: IoChannels) -> io::Result<JoinHandle<()>> {
    let file = active.map(|path| OpenOptions::new().write(true).open(path)).transpose()?;
    std::thread::Builder::new().name("journal-io".to_owned()).spawn(move || run(file, channels))
}

fn run(mut file: Option<File>, channels: IoChannels) {
    // Ends when the writer drops its sender; one pass per batch.
    while let Ok(mut batch) = channels.batches.recv() {
        let result = write_batch(&mut file, &batch);
        let last_lsn = batch.last_lsn;
        channels.recycle(std::mem::take(&mut batch.bytes));
        if channels.completions.send(result.map(|()| last_lsn)).is_err() {
            break;
        }
    }
}

pub(super) fn write_batch(file: &mut Option<File>, batch: &Batch) -> io::Result<()> {
    if let Some(new_segment) = &batch.new_segment {
        *file = Some(create_segment(new_segment)?);
    }
    let Some(file) = file.as_mut() else {
        return Err(io::Error::other("journal batch without an active segment"));
    };
    file.seek(SeekFrom::Start(batch.offset))?;
    file.write_all(&batch.bytes)?;
    file.sync_data()
}

fn create_segment(new_segment: &NewSegment) -> io::Result<File> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(&new_segment.path)?;
    file.write_all(&new_segment.header)?;
    file.sync_all()?;
    sync_dir(&new_segment.dir)?;
    Ok(file)
}
