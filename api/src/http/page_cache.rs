//! Category pages kept as the bytes they were answered with. A page is read at a version of its
//! category ([`Engine::category_version`], taken before the read) and given again only while that is
//! still the category's version, so a kept page never hides an acknowledged change: any product
//! entering, leaving or changing in the category moves the version on. Bounded by its bytes (the
//! least useful pages go first); `page_cache_bytes = 0` turns it off.
//!
//! Why: a page of 100 products is ~24 KB written from 100 records that are each a few cache misses
//! away, which is most of its cost (BENCHMARKS.md); catalogs are read far more often than written.

use bytes::Bytes;
use kassa_engine::{Engine, Page};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// A listing of one category: which page of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub category: String,
    pub page: Page,
}

#[derive(Clone)]
struct Kept {
    version: u64,
    body: Bytes,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<PageKey, Kept> for ByBytes {
    fn weight(&self, key: &PageKey, kept: &Kept) -> u64 {
        (key.category.len() + kept.body.len()) as u64
    }
}

/// About what a page takes, to size the cache's table.
const PAGE_BYTES_TYPICAL: u64 = 16 * 1024;

pub struct PageCache {
    pages: Option<Cache<PageKey, Kept, ByBytes>>,
}

/// Whether a page came from the cache (`X-Cache`, as the old gateway's cache said it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Hit,
    Miss,
}

impl PageCache {
    pub fn new(bytes: u64) -> PageCache {
        let pages = (bytes > 0).then(|| Cache::with_weighter((bytes / PAGE_BYTES_TYPICAL).max(16) as usize, bytes, ByBytes));
        PageCache { pages }
    }

    /// The page of `key`, from the cache while the category is unchanged, else from `read` (which is
    /// then kept).
    pub fn get_or_read<E>(
        &self,
        engine: &Engine,
        key: PageKey,
        read: impl FnOnce(&PageKey) -> Result<Bytes, E>,
    ) -> Result<(Bytes, Source), E> {
        let Some(pages) = &self.pages else {
            return Ok((read(&key)?, Source::Miss));
        };
        let version = engine.category_version(&key.category);
        if let Some(kept) = pages.get(&key).filter(|k| k.version == version) {
            return Ok((kept.body, Source::Hit));
        }
        let body = read(&key)?;
        pages.insert(key, Kept { version, body: body.clone() });
        Ok((body, Source::Miss))
    }
}
