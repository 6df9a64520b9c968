//! The catalog's read view in memory: every product of one shard, shared with the shard's own state
//! (the same `Arc`s), for point reads from any thread without a store transaction or a decode.
//!
//! A shard changes its products as commands execute, before their events are durable; the view only
//! changes when a batch is released (with the store writes of the same batch, under the same lock), so a
//! read sees exactly what the stores would answer: every acknowledged write, nothing that could still be
//! lost. Listings walk the stores' indexes and take their records from here.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::model::Product;

/// Category versions are counted per slot of a category's hash: a collision only makes an unrelated
/// listing look changed (answered afresh), never a changed one look unchanged.
const CATEGORY_SLOTS: usize = 4096;

/// A product's change in a released batch: its new version, or `None` when it was deleted.
pub type ProductChange = (u64, Option<Arc<Product>>);

pub struct ProductView {
    products: DashMap<u64, Arc<Product>, foldhash::fast::RandomState>,
    /// Per category slot, how many published changes touched a product in it (before or after).
    category_changes: Box<[AtomicU64]>,
    slots: foldhash::fast::FixedState,
}

impl Default for ProductView {
    fn default() -> Self {
        ProductView {
            products: DashMap::default(),
            category_changes: (0..CATEGORY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            slots: foldhash::fast::FixedState::default(),
        }
    }
}

impl ProductView {
    pub fn get(&self, id: u64) -> Option<Arc<Product>> {
        self.products.get(&id).map(|p| Arc::clone(p.value()))
    }

    /// Applies a released batch's changes in order (a later change of a product wins). The categories
    /// a change touches (before and after) are counted once each, after the product itself is
    /// published (release): a reader that sees the new count (acquire) reads the new product.
    pub fn publish(&self, changes: &[ProductChange]) {
        for (id, change) in changes {
            let old = match change {
                Some(product) => self.products.insert(*id, Arc::clone(product)),
                None => self.products.remove(id).map(|(_, old)| old),
            };
            let new_category = change.as_ref().map(|p| p.category.as_str());
            if let Some(category) = new_category {
                self.count_change(category);
            }
            if let Some(old) = old.filter(|old| Some(old.category.as_str()) != new_category) {
                self.count_change(&old.category);
            }
        }
    }

    fn slot(&self, category: &str) -> &AtomicU64 {
        &self.category_changes[(self.slots.hash_one(category) as usize) % CATEGORY_SLOTS]
    }

    fn count_change(&self, category: &str) {
        self.slot(category).fetch_add(1, Ordering::Release);
    }

    /// Changes published so far to products that are or were in `category` (and to some of other
    /// categories): while it stays the same, so does the category's listing.
    pub fn category_version(&self, category: &str) -> u64 {
        self.slot(category).load(Ordering::Acquire)
    }

    /// Fills the view from a shard's recovered products (before the journal's tail is replayed).
    pub fn load<'a>(&self, products: impl Iterator<Item = &'a Arc<Product>>) {
        for p in products {
            self.products.insert(p.id, Arc::clone(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64, category: &str) -> Arc<Product> {
        Arc::new(Product {
            id,
            name: format!("p{id}"),
            description: String::new(),
            price: 1,
            category: category.into(),
            image_url: String::new(),
            available: 1,
            reserved: 0,
            sold: 0,
            created_at: 0,
            updated_at: 0,
            version: 1,
        })
    }

    #[test]
    fn a_category_moves_on_with_every_product_that_enters_changes_in_or_leaves_it() {
        let view = ProductView::default();
        let versions = |view: &ProductView| (view.category_version("books"), view.category_version("games"));
        let start = versions(&view);
        view.publish(&[(1, Some(product(1, "books")))]);
        let created = versions(&view);
        assert_ne!(created.0, start.0, "a product entered books");
        view.publish(&[(1, Some(product(1, "books")))]);
        let changed = versions(&view);
        assert_ne!(changed.0, created.0, "a product changed in books");
        view.publish(&[(1, Some(product(1, "games")))]);
        let moved = versions(&view);
        assert!(moved.0 != changed.0 && moved.1 != changed.1, "a product left books for games: {changed:?} -> {moved:?}");
        view.publish(&[(1, None)]);
        let deleted = versions(&view);
        assert_ne!(deleted.1, moved.1, "a product left games");
        assert_eq!(view.get(1), None);
    }
}
