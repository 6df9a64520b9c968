//! A consistent copy of one shard: both stores read at one LSN, so a consumer can copy the entities and
//! then follow the feed from the next LSN with no gap and no overlap.

use crate::engine::Engine;
use crate::feed::FeedError;
use crate::model::{Basket, Notification, Payment, Product};
use crate::store::{Keyspace, StoreSnapshot};
use crate::views::{self, DecodeError};

/// One shard's entities as of [`ShardSnapshot::lsn`]. Holds the stores' snapshots open (cheap; writes go
/// on), so read it and drop it.
pub struct ShardSnapshot {
    shard: usize,
    lsn: u64,
    pub(crate) catalog: Box<dyn StoreSnapshot>,
    pub(crate) state: Box<dyn StoreSnapshot>,
}

impl ShardSnapshot {
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The last LSN the snapshot reflects: follow the feed from `lsn() + 1`.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Every product, in id order; stops early if `f` returns false.
    pub fn products(&self, f: &mut dyn FnMut(Product) -> bool) -> Result<(), FeedError> {
        walk(&*self.catalog, Keyspace::Products, self.lsn, views::decode_product, f)
    }

    pub fn baskets(&self, f: &mut dyn FnMut(Basket) -> bool) -> Result<(), FeedError> {
        walk(&*self.state, Keyspace::Baskets, self.lsn, views::decode_basket, f)
    }

    pub fn payments(&self, f: &mut dyn FnMut(Payment) -> bool) -> Result<(), FeedError> {
        walk(&*self.state, Keyspace::Payments, self.lsn, views::decode_payment, f)
    }

    pub fn notifications(&self, f: &mut dyn FnMut(Notification) -> bool) -> Result<(), FeedError> {
        walk(&*self.state, Keyspace::Notifications, self.lsn, views::decode_notification, f)
    }
}

fn walk<T>(
    store: &dyn StoreSnapshot,
    ks: Keyspace,
    lsn: u64,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
    f: &mut dyn FnMut(T) -> bool,
) -> Result<(), FeedError> {
    let mut failure = None;
    store.for_each(ks, &mut |_, value| match decode(value) {
        Ok(entity) => f(entity),
        Err(e) => {
            failure = Some(FeedError::Decode { lsn, reason: e.to_string() });
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}

impl Engine {
    /// A consistent snapshot of shard `shard`. With `pin`, the named feed cursor is set to the snapshot's
    /// LSN + 1 before any later batch is applied, so the journal a consumer needs after the copy is kept.
    pub fn snapshot(&self, shard: usize, pin: Option<&str>) -> Result<ShardSnapshot, FeedError> {
        let views = self.views().get(shard).ok_or(FeedError::NoShard(shard))?;
        let (catalog, state) = views.snapshot(|lsn| match pin {
            Some(name) => self.advance_feed_cursor(name, shard, lsn + 1),
            None => Ok(()),
        })?;
        let lsn = catalog.applied_lsn().min(state.applied_lsn());
        Ok(ShardSnapshot { shard, lsn, catalog, state })
    }
}
