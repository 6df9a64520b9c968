//! Reads that go through a whole store or a whole listing, and where they run ([`blocking`]).

use axum::http::StatusCode;
use kassa_engine::Engine;

use crate::error::ApiError;

/// Runs `f` on tokio's blocking pool, off the listener's runtime thread: a full scan (an admin report,
/// every page of a listing) would otherwise stall every other connection that thread serves. A panic
/// in `f` is a 500, as it is in a handler.
pub async fn blocking<T: Send + 'static>(engine: &Engine, f: impl FnOnce(&Engine) -> T + Send + 'static) -> Result<T, ApiError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine)).await.map_err(|e| {
        tracing::error!(error = %e, "a store scan failed");
        ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_off_the_runtime_thread_and_a_panic_is_a_500() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = kassa_engine::EngineConfig::new(dir.path());
        cfg.shards = 1;
        cfg.pin_threads = false;
        cfg.cache_bytes = 8 << 20;
        let engine = Engine::open(cfg).unwrap();
        // One thread, as each listener runs: the scan must not take it.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let here = std::thread::current().id();
            let (there, shards) = blocking(&engine, |e| (std::thread::current().id(), e.shards())).await.unwrap();
            assert_ne!(there, here, "the scan ran on the runtime's thread");
            assert_eq!(shards, 1, "with the same engine");
            let failed = blocking(&engine, |_| -> u8 { panic!("a scan bug") }).await.unwrap_err();
            assert_eq!((failed.status, failed.message.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
        });
        engine.shutdown();
    }
}
