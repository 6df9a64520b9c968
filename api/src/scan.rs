//! Reads that go through a whole store or a whole listing: where they run ([`blocking`]) and how a
//! paged listing is read to its end ([`all_pages`]).

use axum::http::StatusCode;
use kassa_engine::{Engine, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX, Page};

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

/// Every item of a paged listing, read page by page from the start with `page`: at most `cap` items,
/// and no page deeper than the engine's deepest offset.
pub fn all_pages<T, E>(cap: usize, mut page: impl FnMut(Page) -> Result<Vec<T>, E>) -> Result<Vec<T>, E> {
    let mut out = Vec::new();
    while out.len() < cap && out.len() <= PAGE_OFFSET_MAX {
        let limit = PAGE_LIMIT_MAX.min(cap - out.len());
        let items = page(Page::new(out.len(), limit))?;
        let last = items.len() < limit;
        out.extend(items);
        if last {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of `n` numbers, served as the engine serves pages (offset and limit clamped).
    fn listing(n: usize, asked: &mut Vec<Page>) -> impl FnMut(Page) -> Result<Vec<usize>, ()> + '_ {
        move |p| {
            asked.push(p);
            Ok((p.offset..n).take(p.limit).collect())
        }
    }

    #[test]
    fn reads_to_the_end_to_the_cap_and_to_the_deepest_page() {
        let mut asked = Vec::new();
        assert_eq!(all_pages(usize::MAX, listing(2_500, &mut asked)), Ok((0..2_500).collect()));
        assert_eq!(asked.iter().map(|p| p.offset).collect::<Vec<_>>(), [0, 1_000, 2_000]);
        asked.clear();
        assert_eq!(all_pages(usize::MAX, listing(2_000, &mut asked)).unwrap().len(), 2_000);
        assert_eq!(asked.len(), 3, "a full last page needs one more, empty, read");
        asked.clear();
        assert_eq!(all_pages(1_500, listing(5_000, &mut asked)), Ok((0..1_500).collect()));
        assert_eq!(asked.iter().map(|p| (p.offset, p.limit)).collect::<Vec<_>>(), [(0, 1_000), (1_000, 500)]);
        asked.clear();
        assert_eq!(all_pages(0, listing(5, &mut asked)), Ok(Vec::new()));
        assert!(asked.is_empty());
        asked.clear();
        let deep = all_pages(usize::MAX, listing(200_000, &mut asked)).unwrap();
        assert_eq!(deep.len(), PAGE_OFFSET_MAX + PAGE_LIMIT_MAX, "stops after the page at the deepest offset");
        assert_eq!(asked.last().map(|p| p.offset), Some(PAGE_OFFSET_MAX));
        assert_eq!(all_pages(usize::MAX, |_| Err::<Vec<usize>, _>("store")), Err("store"));
    }

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
