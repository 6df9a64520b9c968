//! The catalog's read view in memory: every product of one shard, shared with the shard's own state
//! (the same `Arc`s), for point reads from any thread without a store transaction or a decode.
//!
//! A shard changes its products as commands execute, before their events are durable; the view only
//! changes when a batch is released (with the store writes of the same batch, under the same lock), so a
//! read sees exactly what the stores would answer: every acknowledged write, nothing that could still be
//! lost. Listings walk the stores' indexes and take their records from here.

use std::sync::Arc;

use dashmap::DashMap;

use crate::model::Product;

/// A product's change in a released batch: its new version, or `None` when it was deleted.
pub type ProductChange = (u64, Option<Arc<Product>>);

#[derive(Default)]
pub struct ProductView {
    products: DashMap<u64, Arc<Product>, foldhash::fast::RandomState>,
}

impl ProductView {
    pub fn get(&self, id: u64) -> Option<Arc<Product>> {
        self.products.get(&id).map(|p| Arc::clone(p.value()))
    }

    /// Applies a released batch's changes in order (a later change of a product wins).
    pub fn publish(&self, changes: &[ProductChange]) {
        for (id, change) in changes {
            match change {
                Some(product) => {
                    self.products.insert(*id, Arc::clone(product));
                }
                None => {
                    self.products.remove(id);
                }
            }
        }
    }

    /// Fills the view from a shard's recovered products (before the journal's tail is replayed).
    pub fn load<'a>(&self, products: impl Iterator<Item = &'a Arc<Product>>) {
        for p in products {
            self.products.insert(p.id, Arc::clone(p));
        }
    }
}
