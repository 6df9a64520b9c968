//! One entity of a shard snapshot, as a bootstrap loads it and `verify` compares it.

use kassa_engine::{Basket, FeedError, Notification, Payment, Product, ShardSnapshot};

// Each entity is moved once from the snapshot to its writer; boxing would add an allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    Product(Product),
    Basket(Basket),
    Payment(Payment),
    Notification(Notification),
}

impl Entity {
    /// `product:<id>`, `basket:<user_id>`, `payment:<id>`, `notification:<id>`: unique across kinds.
    pub fn key(&self) -> String {
        match self {
            Entity::Product(p) => format!("product:{}", p.id),
            Entity::Basket(b) => format!("basket:{}", b.user_id),
            Entity::Payment(p) => format!("payment:{}", p.id),
            Entity::Notification(n) => format!("notification:{}", n.id),
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            Entity::Product(p) => p.version,
            Entity::Basket(b) => b.version,
            Entity::Payment(p) => p.version,
            Entity::Notification(n) => n.version,
        }
    }
}

/// Every entity of a shard snapshot, kind by kind (products, baskets, payments, notifications), until `f`
/// returns false.
pub(crate) fn walk(snapshot: &ShardSnapshot, f: &mut dyn FnMut(Entity) -> bool) -> Result<(), FeedError> {
    let mut going = true;
    snapshot.products(&mut |p| {
        going = f(Entity::Product(p));
        going
    })?;
    if going {
        snapshot.baskets(&mut |b| {
            going = f(Entity::Basket(b));
            going
        })?;
    }
    if going {
        snapshot.payments(&mut |p| {
            going = f(Entity::Payment(p));
            going
        })?;
    }
    if going {
        snapshot.notifications(&mut |n| {
            going = f(Entity::Notification(n));
            going
        })?;
    }
    Ok(())
}
