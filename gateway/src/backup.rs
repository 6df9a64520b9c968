//! `POST /admin/backup`: an online backup of this node (`Engine::backup`), streamed to the caller as a
//! tar of the backup directory (what `kassa backup` unpacks and checks). The backup is taken in full into
//! `<data_dir>/backups/` first, so that a failure is a clear status rather than a cut stream, and is
//! removed once sent.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::mpsc;

use crate::front::Shared;

pub const BACKUP_PATH: &str = "/admin/backup";
/// Chunks in flight between the tar writer and the socket.
const CHUNKS_IN_FLIGHT: usize = 8;

pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new().route(BACKUP_PATH, post(backup)).with_state(shared)
}

/// Removes backups a node was sending when it stopped (`<data_dir>/backups/`): only a running node sends
/// them, and a caller cut off by its end holds a copy without a manifest, which the check refuses.
pub fn clear_unsent_backups(data_dir: &std::path::Path) {
    let dir = data_dir.join("backups");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "removed backups left by an earlier run"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "backups left by an earlier run could not be removed"),
    }
}

fn refused(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

async fn backup(State(shared): State<Arc<Shared>>) -> Response {
    let Some(engine) = shared.engine.clone() else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "this gateway holds no engine".into());
    };
    let dir = engine.config().data_dir.join("backups").join(format!("backup-{}", kassa_engine::now_micros()));
    let taken = {
        let (engine, dir) = (engine.clone(), dir.clone());
        tokio::task::spawn_blocking(move || engine.backup(&dir, &mut |_| {})).await
    };
    let manifest = match taken {
        Ok(Ok(manifest)) => manifest,
        Ok(Err(e)) => {
            let _ = std::fs::remove_dir_all(&dir);
            tracing::error!(error = %e, "backup failed");
            return refused(StatusCode::SERVICE_UNAVAILABLE, format!("backup failed: {e}"));
        }
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, format!("backup task: {e}")),
    };
    tracing::info!(shards = manifest.shards.len(), dir = %dir.display(), "backup taken; sending it");
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let sender = ChunkWriter(tx.clone());
        let mut archive = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, sender));
        let sent = archive.append_dir_all(".", &dir).and_then(|()| archive.into_inner()).and_then(|mut w| w.flush());
        if let Err(e) = sent {
            // The caller sees a cut stream, which its check refuses.
            tracing::warn!(error = %e, "sending a backup stopped");
            let _ = tx.blocking_send(Err(e));
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "a sent backup could not be removed");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    ([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(stream)).into_response()
}

/// The tar writer's output, handed to the response body chunk by chunk.
struct ChunkWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the caller went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
