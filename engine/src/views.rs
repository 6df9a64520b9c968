//! Stores as views of the journal: which entity lives in which keyspace of which store, and how keys
//! are laid out.
//!
//! Each shard has two stores. The catalog view (products, their indexes, reservations) is read far more
//! than written and wants fast point and range reads: redb's B-tree. The state view (baskets, payments,
//! notifications, idempotency records) is written on almost every command: fjall's LSM. The measurement
//! behind that choice is in docs/ARCHITECTURE.md; `StoreChoice` lets benchmarks try either store for both.

use std::path::Path;
use std::sync::Arc;

use crate::model::{Basket, IdempotencyRecord, Notification, Payment, Product, Reservation, Wallet};
use crate::product_view::{ProductChange, ProductView};
use crate::store::{self, BufferedStore, Store, StoreError, StoreSnapshot, WriteBatch};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Catalog,
    State,
}

/// Which store backs each view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// redb for the catalog, fjall for the state (the measured default).
    Auto,
    Fjall,
    Redb,
}

impl StoreChoice {
    pub fn parse(text: &str) -> Option<StoreChoice> {
        match text {
            "auto" => Some(StoreChoice::Auto),
            "fjall" => Some(StoreChoice::Fjall),
            "redb" => Some(StoreChoice::Redb),
            _ => None,
        }
    }
}

/// Snapshots of the catalog and state stores at one LSN.
pub type ViewSnapshots = (Box<dyn StoreSnapshot>, Box<dyn StoreSnapshot>);

/// The two stores of one shard, each behind a write buffer (`store::buffered`): a shard's writes land in
/// memory and the projector moves them into the stores in large batches, off the shard's thread.
#[derive(Clone)]
pub struct Views {
    pub catalog: Arc<dyn Store>,
    pub state: Arc<dyn Store>,
    /// Every product of the shard in memory, changed with the stores (`product_view`).
    pub products: Arc<ProductView>,
    buffers: [Arc<BufferedStore>; 2],
    /// Held while a batch is applied to both stores and while both are snapshotted, so a snapshot never
    /// sees one store a batch ahead of the other. Uncontended but for snapshots (rare).
    projection: Arc<parking_lot::Mutex<()>>,
}

impl Views {
    pub fn open(dir: &Path, choice: StoreChoice, cache_bytes: u64) -> Result<Views, StoreError> {
        let half = cache_bytes / 2;
        let open = |name: &str, redb: bool| -> Result<Arc<dyn Store>, StoreError> {
            if redb { store::open_redb(&dir.join(format!("{name}.redb")), half) } else { store::open_fjall(&dir.join(name), half) }
        };
        let (catalog_redb, state_redb) = match choice {
            StoreChoice::Auto => (true, false),
            StoreChoice::Fjall => (false, false),
            StoreChoice::Redb => (true, true),
        };
        let catalog = Arc::new(BufferedStore::new(open("catalog", catalog_redb)?)?);
        let state = Arc::new(BufferedStore::new(open("state", state_redb)?)?);
        Ok(Views {
            catalog: catalog.clone(),
            state: state.clone(),
            products: Arc::default(),
            buffers: [catalog, state],
            projection: Default::default(),
        })
    }

    /// Moves both stores' buffered writes into them (the projector's step).
    pub fn project(&self) -> Result<(), StoreError> {
        for buffer in &self.buffers {
            buffer.flush()?;
        }
        Ok(())
    }

    /// Writes applied but not yet in the stores, both stores together.
    pub fn buffered_entries(&self) -> usize {
        self.buffers.iter().map(|b| b.buffered_entries()).sum()
    }

    /// Snapshots of both stores at the same LSN, taken while no batch is being applied. `pin` runs under
    /// the same exclusion with that LSN (the feed cursor is registered before any later batch lands).
    pub fn snapshot<E>(&self, pin: impl FnOnce(u64) -> Result<(), E>) -> Result<ViewSnapshots, E>
    where
        E: From<StoreError>,
    {
        let _applying = self.projection.lock();
        let catalog = self.catalog.snapshot()?;
        let state = self.state.snapshot()?;
        debug_assert_eq!(catalog.applied_lsn(), state.applied_lsn(), "both views are applied at one LSN");
        pin(catalog.applied_lsn().min(state.applied_lsn()))?;
        Ok((catalog, state))
    }
}

/// Store writes collected while applying events, one batch per view.
#[derive(Default)]
pub struct Writes {
    pub catalog: WriteBatch,
    pub state: WriteBatch,
    /// Highest LSN whose writes are in each batch (0 = none).
    pub catalog_lsn: u64,
    pub state_lsn: u64,
    /// The products these writes change, in order, for the in-memory view.
    pub products: Vec<ProductChange>,
}

impl Writes {
    pub fn batch(&mut self, view: View, lsn: u64) -> &mut WriteBatch {
        match view {
            View::Catalog => {
                self.catalog_lsn = self.catalog_lsn.max(lsn);
                &mut self.catalog
            }
            View::State => {
                self.state_lsn = self.state_lsn.max(lsn);
                &mut self.state
            }
        }
    }

    /// [`Writes::batch`] and the product changes beside it, for an event that changes a product.
    pub fn batch_and_products(&mut self, view: View, lsn: u64) -> (&mut WriteBatch, &mut Vec<ProductChange>) {
        self.batch(view, lsn);
        let batch = if view == View::Catalog { &mut self.catalog } else { &mut self.state };
        (batch, &mut self.products)
    }

    /// Concatenates batches in order (later writes to a key win, as they would applied one by one).
    pub fn merge<'a>(parts: impl Iterator<Item = &'a Writes>) -> Writes {
        let mut out = Writes::default();
        for w in parts {
            for (from, to) in [(&w.catalog, &mut out.catalog), (&w.state, &mut out.state)] {
                for (ks, key, value) in from.ops() {
                    match value {
                        Some(v) => to.put(*ks, key, v),
                        None => to.delete(*ks, key),
                    }
                }
            }
            out.catalog_lsn = out.catalog_lsn.max(w.catalog_lsn);
            out.state_lsn = out.state_lsn.max(w.state_lsn);
            out.products.extend(w.products.iter().cloned());
        }
        out
    }

    /// Applies both batches, each store recording `lsn` as applied: a view that had no writes up to `lsn`
    /// is up to date all the same, and saying so lets checkpoints release the journal below it.
    pub fn apply_to(&self, views: &Views, lsn: u64) -> Result<(), StoreError> {
        assert!(lsn >= self.catalog_lsn.max(self.state_lsn), "a batch is applied at or after its last event");
        let _applying = views.projection.lock();
        views.catalog.apply(&self.catalog, lsn)?;
        views.state.apply(&self.state, lsn)?;
        views.products.publish(&self.products);
        Ok(())
    }
}

// ---- keys ----

pub fn product_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Signed amounts sort correctly as unsigned big-endian once the sign bit is flipped.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn category_key(category: &str, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(category.len() + 9);
    k.extend_from_slice(category.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn category_prefix(category: &str) -> Vec<u8> {
    let mut k = category.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn price_key(price: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ordered_i64(price));
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The price at the front of a `ProductsByPrice` key.
pub fn price_from_index_key(key: &[u8]) -> Option<i64> {
    let head: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(head) ^ (1 << 63)) as i64)
}

pub fn id_from_index_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// `user \0 created_be id`: a user's entities in creation order.
pub fn by_user_key(user_id: &str, created_at: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_id.len() + 9 + id.len());
    k.extend_from_slice(user_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&ordered_i64(created_at));
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn user_prefix(user_id: &str) -> Vec<u8> {
    let mut k = user_id.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn idempotency_key(scope: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 1 + key.len());
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

// ---- record encoding ----

pub fn encode<T>(value: &T) -> rkyv::util::AlignedVec
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<rkyv::util::AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rkyv::rancor::Error>,
        >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(value).expect("records always serialize")
}

/// A stored record that does not decode (a bug or corruption; never caused by client input).
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what} record: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

macro_rules! decoder {
    ($name:ident, $ty:ty) => {
        /// Decodes a stored record, validating it (store bytes are not assumed aligned or trusted).
        pub fn $name(bytes: &[u8]) -> Result<$ty, DecodeError> {
            let err = |e: rkyv::rancor::Error| DecodeError { what: stringify!($ty), reason: e.to_string() };
            // Most allocations are already 16-byte aligned; copy only when this one is not.
            if (bytes.as_ptr() as usize) % 16 == 0 {
                return rkyv::from_bytes::<$ty, rkyv::rancor::Error>(bytes).map_err(err);
            }
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
            aligned.extend_from_slice(bytes);
            rkyv::from_bytes::<$ty, rkyv::rancor::Error>(&aligned).map_err(err)
        }
    };
}

decoder!(decode_product, Product);
decoder!(decode_reservation, Reservation);
decoder!(decode_basket, Basket);
decoder!(decode_payment, Payment);
decoder!(decode_notification, Notification);
decoder!(decode_idempotency, IdempotencyRecord);
decoder!(decode_wallet, Wallet);

pub use crate::store::Keyspace as Ks;
