//! The journal's I/O behind a tiny seam: one [`Backend`] enum, three implementations.
//!
//! - `uring.rs`: a thread running a tokio-uring runtime; writes and `fdatasync`s are io_uring operations.
//! - `fallback.rs`: portable, a thread doing `std::fs::File` writes and `sync_data`.
//! - inline: no thread at all; the shard's own thread writes and `fdatasync`s the batch when it submits
//!   it (`fallback::write_batch`), so a group commit costs no hand-off and no wake-up.
//!
//! All take [`Batch`]es in order and answer each with `Ok(last_lsn)` once the batch is durable, or with
//! the I/O error, on the same completion channel. The writer keeps at most one batch in flight, so the channels never
//! fill up. tokio-uring is unmaintained and io_uring is often blocked by seccomp in containers, hence the
//! choice at start-up ([`crate::journal::IoMode`]).

mod fallback;
#[cfg(target_os = "linux")]
mod uring;

use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::format::SEGMENT_HEADER_BYTES;
use super::{IoMode, JournalError, Lsn};

/// What the I/O thread reports per batch: durable-up-to LSN, or the error that stopped the batch.
pub type Completion = Result<Lsn, io::Error>;

// Buffers above this size are dropped instead of recycled so that one huge batch does not pin memory.
const SPARE_BUFFER_BYTES_MAX: usize = 8 << 20;
const SPARE_BUFFERS_MAX: usize = 2;

/// A segment file to create before writing a batch: create, write the header, fsync it, fsync the directory.
#[derive(Debug)]
pub(crate) struct NewSegment {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub header: [u8; SEGMENT_HEADER_BYTES],
}

/// One group commit: `bytes` (whole frames) written at `offset` of the active segment, then one fdatasync.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Set when this batch starts a new segment, which then becomes the active one.
    pub new_segment: Option<NewSegment>,
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub last_lsn: Lsn,
}

/// The I/O thread's ends of the channels.
pub(crate) struct IoChannels {
    pub batches: Receiver<Batch>,
    pub completions: Sender<Completion>,
    pub spare_buffers: Sender<Vec<u8>>,
}

impl IoChannels {
    /// Hands a written buffer back to the writer for reuse (no allocation per batch in steady state).
    pub fn recycle(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() <= SPARE_BUFFER_BYTES_MAX {
            bytes.clear();
            // A full spare channel just means the writer has enough buffers.
            let _ = self.spare_buffers.try_send(bytes);
        }
    }
}

/// The implementations of the journal's I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Portable,
    Inline,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Portable => "portable",
            Backend::Inline => "inline",
        }
    }

    /// Starts the thread; `active` is the existing segment that the next batches append to, if any.
    /// Fails (without leaving a thread behind) if the backend cannot be set up here.
    fn spawn(self, active: Option<PathBuf>, channels: IoChannels) -> io::Result<JoinHandle<()>> {
        match self {
            Backend::Portable => fallback::spawn(active, channels),
            Backend::Inline => unreachable!("the inline backend has no thread"),
            #[cfg(target_os = "linux")]
            Backend::Uring => uring::spawn(active, channels),
            #[cfg(not(target_os = "linux"))]
            Backend::Uring => Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring exists only on Linux")),
        }
    }
}

/// Checks whether an io_uring runtime can be set up and run an operation here (in a scratch thread).
pub fn probe_uring() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        uring::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring exists only on Linux"))
    }
}

/// The writer's handle on its I/O thread (or, inline, on the file it writes itself). Dropping it lets
/// the thread finish its batch and joins it.
pub(crate) struct IoThread {
    backend: Backend,
    batches: Option<Sender<Batch>>,
    completions: Receiver<Completion>,
    spare_buffers: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<()>>,
    /// The inline backend's active segment and its ends of the channels.
    inline: Option<(Option<std::fs::File>, IoChannels)>,
}

impl IoThread {
    /// Starts the backend `mode` asks for; `Auto` falls back to the portable one if io_uring fails.
    pub fn start(mode: IoMode, active: Option<PathBuf>) -> Result<IoThread, JournalError> {
        match mode {
            IoMode::Portable => Ok(IoThread::start_backend(Backend::Portable, active)?),
            IoMode::Inline => Ok(IoThread::start_backend(Backend::Inline, active)?),
            IoMode::Uring => IoThread::start_backend(Backend::Uring, active).map_err(JournalError::UringUnavailable),
            IoMode::Auto => match IoThread::start_backend(Backend::Uring, active.clone()) {
                Ok(thread) => Ok(thread),
                Err(err) => {
                    tracing::warn!(error = %err, "io_uring unavailable, journal uses the portable backend");
                    Ok(IoThread::start_backend(Backend::Portable, active)?)
                }
            },
        }
    }

    fn start_backend(backend: Backend, active: Option<PathBuf>) -> io::Result<IoThread> {
        // One batch in flight plus slack: sends on these channels never block.
        let (batch_tx, batch_rx) = bounded(2);
        let (completion_tx, completion_rx) = bounded(2);
        let (spare_tx, spare_rx) = bounded(SPARE_BUFFERS_MAX);
        let channels = IoChannels { batches: batch_rx, completions: completion_tx, spare_buffers: spare_tx };
        let (handle, inline) = if backend == Backend::Inline {
            let file = active.map(|path| std::fs::OpenOptions::new().write(true).open(path)).transpose()?;
            (None, Some((file, channels)))
        } else {
            tracing::debug!(backend = backend.name(), "journal I/O thread started");
            (Some(backend.spawn(active, channels)?), None)
        };
        Ok(IoThread { backend, batches: Some(batch_tx), completions: completion_rx, spare_buffers: spare_rx, handle, inline })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Queues a batch (inline: writes and syncs it now, its completion then waiting on the channel);
    /// fails only if the I/O thread is gone.
    pub fn submit(&mut self, mut batch: Batch) -> Result<(), Batch> {
        if let Some((file, channels)) = &mut self.inline {
            let result = fallback::write_batch(file, &batch).map(|()| batch.last_lsn);
            channels.recycle(std::mem::take(&mut batch.bytes));
            // One batch in flight and room for two: never full.
            let _ = channels.completions.try_send(result);
            return Ok(());
        }
        match &self.batches {
            Some(sender) => sender.send(batch).map_err(|err| err.into_inner()),
            None => Err(batch),
        }
    }

    pub fn completions(&self) -> &Receiver<Completion> {
        &self.completions
    }

    /// A recycled, empty buffer if one is available.
    pub fn take_spare(&self) -> Option<Vec<u8>> {
        self.spare_buffers.try_recv().ok()
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        // Closing the batch channel ends the thread's loop after the batch it is working on.
        self.batches = None;
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("journal I/O thread panicked");
        }
    }
}
