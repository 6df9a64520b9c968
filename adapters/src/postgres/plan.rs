//! What one `apply` or `load` writes: for every row it touches, only the last change of the batch, as
//! column values with the version that guards it and the LSN to blame if PostgreSQL refuses it.
//!
//! Keeping only the last change per key is what lets each kind be one multi-row statement (PostgreSQL
//! refuses to update one row twice in one `INSERT … ON CONFLICT`), and it is exact: the batch is one
//! transaction, so the intermediate states were never visible anyway.

use std::collections::HashMap;

use kassa_engine::money::Currency;
use kassa_engine::{Event, FeedRecord};

use super::rows::{NotificationRow, ProductRow, product_id, version};
use crate::{Entity, TargetError};

/// One change, with the version that guards it and the LSN of the record (or the entity's version, in
/// a bootstrap) that carried it.
#[derive(Clone, Debug)]
pub struct Staged<T> {
    pub lsn: u64,
    pub version: i64,
    pub value: T,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub products: Vec<Staged<ProductRow>>,
    pub product_deletes: Vec<Staged<i64>>,
    pub notifications: Vec<Staged<NotificationRow>>,
    pub notification_deletes: Vec<Staged<String>>,
}

enum Change<'a> {
    Product(&'a kassa_engine::Product),
    ProductGone { id: u64, version: u64 },
    Notification(&'a kassa_engine::Notification),
    NotificationGone { id: &'a str, version: u64 },
}

impl Plan {
    /// The rows of `records`; baskets, payments and the engine's internal records are not this target's.
    pub fn of_records(records: &[FeedRecord], currency: Currency) -> Result<Plan, TargetError> {
        let changes = records.iter().filter_map(|r| {
            let change = match &r.event {
                Event::ProductPut { product, .. } => Change::Product(product),
                Event::ProductDeleted { id, version } => Change::ProductGone { id: *id, version: *version },
                Event::NotificationPut { notification } => Change::Notification(notification),
                Event::NotificationDeleted { id, version, .. } => Change::NotificationGone { id, version: *version },
                _ => return None,
            };
            Some((r.lsn, change))
        });
        Plan::of_changes(changes, currency)
    }

    /// The rows of a snapshot chunk; an entity's version stands in for the LSN of a refusal.
    pub fn of_entities(entities: &[Entity], currency: Currency) -> Result<Plan, TargetError> {
        let changes = entities.iter().filter_map(|e| match e {
            Entity::Product(p) => Some((p.version, Change::Product(p))),
            Entity::Notification(n) => Some((n.version, Change::Notification(n))),
            Entity::Basket(_) | Entity::Payment(_) => None,
        });
        Plan::of_changes(changes, currency)
    }

    fn of_changes<'a>(changes: impl Iterator<Item = (u64, Change<'a>)>, currency: Currency) -> Result<Plan, TargetError> {
        // The last change per key wins; the order of the survivors does not matter (one row each).
        let mut last: HashMap<(bool, String), (u64, Change<'a>)> = HashMap::new();
        for (lsn, change) in changes {
            let key = match &change {
                Change::Product(p) => (true, p.id.to_string()),
                Change::ProductGone { id, .. } => (true, id.to_string()),
                Change::Notification(n) => (false, n.id.clone()),
                Change::NotificationGone { id, .. } => (false, (*id).to_string()),
            };
            last.insert(key, (lsn, change));
        }
        let mut survivors: Vec<(u64, Change<'a>)> = last.into_values().collect();
        survivors.sort_by_key(|(lsn, _)| *lsn);
        let mut plan = Plan::default();
        for (lsn, change) in survivors {
            let rejected = |reason: String| TargetError::Rejected { lsn, reason };
            match change {
                Change::Product(p) => plan.products.push(Staged {
                    lsn,
                    version: version(p.version).map_err(rejected)?,
                    value: ProductRow::of(p, currency).map_err(rejected)?,
                }),
                Change::ProductGone { id, version: v } => plan.product_deletes.push(Staged {
                    lsn,
                    version: version(v).map_err(rejected)?,
                    value: product_id(id).map_err(rejected)?,
                }),
                Change::Notification(n) => plan.notifications.push(Staged {
                    lsn,
                    version: version(n.version).map_err(rejected)?,
                    value: NotificationRow::of(n).map_err(rejected)?,
                }),
                Change::NotificationGone { id, version: v } => {
                    plan.notification_deletes.push(Staged { lsn, version: version(v).map_err(rejected)?, value: id.to_string() })
                }
            }
        }
        Ok(plan)
    }

    /// The highest product id this plan writes (for moving the old writers' id sequence past it).
    pub fn max_product_id(&self) -> Option<i64> {
        self.products.iter().map(|s| s.value.id).max()
    }
}
