//! PostgreSQL: `products` in the catalog's database (`[adapters.postgres] url`, the old
//! `product_service`) and `notifications` in the notifications' database (`notifications_url`, the old
//! `notification_service`; the same database when unset), with the old tables' names, columns, types
//! and indexes (seed contract §2.5, §5.3). Baskets and payments are other targets'.
//!
//! Every row write is guarded by the entity's version in `kassa_versions` and each database's cursor
//! row in `kassa_cursors` commits in the same transaction as that database's rows (see [`write`]).
//!
//! With two databases there are two transactions and no distributed commit, and that is still exactly
//! once in effect: the catalog commits first, then the notifications; each database's cursor only ever
//! says what that database holds, and [`PostgresTarget::cursor`] answers the lower of the two. A crash
//! between the commits leaves the catalog ahead: the records between the two cursors are then applied
//! again to both, and the catalog's version guard turns the second application into nothing.

mod link;
mod plan;
mod rows;
pub mod schema;
mod write;

use std::collections::{BTreeMap, HashSet};

use kassa_engine::FeedRecord;
use kassa_engine::money::Currency;
use kassa_engine::placement::{shard_of_product, shard_of_user};

use self::link::{Failure, Link, unavailable};
use self::plan::Plan;
use self::rows::{NotificationRow, ProductRow};
use self::write::{Blame, Chunking, SCHEMA_LOCK};
use crate::config::PostgresConfig;
use crate::{Connect, Entity, Target, TargetError};

/// Opens the PostgreSQL target's connections, one set per shard, and creates the schema.
pub struct PostgresConnect {
    config: PostgresConfig,
    /// The shop currency: products carry minor units of it.
    currency: Currency,
}

impl PostgresConnect {
    pub fn new(config: PostgresConfig, currency: Currency) -> PostgresConnect {
        PostgresConnect { config, currency }
    }

    fn notifications_url(&self) -> &str {
        self.config.notifications_url.as_deref().filter(|u| !u.is_empty()).unwrap_or(&self.config.url)
    }

    fn separate(&self) -> bool {
        self.notifications_url() != self.config.url
    }
}

impl Connect for PostgresConnect {
    type Target = PostgresTarget;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn schema(&self) -> String {
        schema::printable(self.separate())
    }

    async fn connect(&self, shard: usize, shards: usize) -> Result<PostgresTarget, TargetError> {
        let shards = u32::try_from(shards).ok().filter(|n| *n > 0 && shard < *n as usize);
        let (Some(shards), Ok(shard_id)) = (shards, i32::try_from(shard)) else {
            return Err(TargetError::Unavailable(format!("no shard {shard} of the configured shards")));
        };
        if self.config.url.is_empty() {
            return Err(TargetError::Unavailable("[adapters.postgres] url is empty".into()));
        }
        let mut catalog = Link::open(&self.config.url).await?;
        let mut notifications = None;
        if self.separate() {
            let mut other = Link::open(self.notifications_url()).await?;
            // The same database under another URL is one database: one transaction, one cursor row.
            if other.identity().await? != catalog.identity().await? {
                notifications = Some(other);
            }
        }
        migrate(&mut catalog, &schema::catalog(notifications.is_none())).await?;
        if let Some(link) = &mut notifications {
            migrate(link, &schema::notifications()).await?;
        }
        Ok(PostgresTarget {
            owner: Owner { shard, shards },
            shard_id,
            currency: self.currency,
            catalog,
            notifications,
            sequence_floor: 0,
            sql: Sql {
                products_unnest: write::put_products_unnest(),
                products_staged: write::put_products_staged(),
                notifications_unnest: write::put_notifications_unnest(),
                notifications_staged: write::put_notifications_staged(),
            },
        })
    }
}

/// Applies the DDL under an advisory lock: shards connect concurrently, and `CREATE TABLE IF NOT
/// EXISTS` run twice at once can fail on PostgreSQL's catalog.
async fn migrate(link: &mut Link, statements: &[&str]) -> Result<(), TargetError> {
    let tx = link.client().await?.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(unavailable)?;
    for statement in statements {
        tx.batch_execute(statement).await.map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)
}

/// The upsert statements, built once.
struct Sql {
    products_unnest: String,
    products_staged: String,
    notifications_unnest: String,
    notifications_staged: String,
}

/// How a plan reaches the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// COPY into the staging tables, then one guarded merge per kind (bootstrap).
    Copy,
    /// One guarded statement per kind and operation, with the rows as array parameters.
    Batched,
    /// One guarded statement per row: finds the record PostgreSQL refuses.
    OneByOne,
}

/// Which rows are this shard's (products by id, notifications by user id), as the engine places them.
#[derive(Clone, Copy)]
struct Owner {
    shard: usize,
    shards: u32,
}

impl Owner {
    fn product(self, id: i64) -> bool {
        // A negative id belongs to no shard; shard 0 reports it so that `verify` sees it.
        u64::try_from(id).map_or(self.shard == 0, |id| shard_of_product(id, self.shards) as usize == self.shard)
    }

    fn user(self, user_id: &str) -> bool {
        shard_of_user(user_id, self.shards) as usize == self.shard
    }

    /// This shard's products the snapshot lacks and that are not newer than it.
    fn stale_products(self, rows: Vec<(i64, Option<i64>)>, snapshot: i64, present: &HashSet<String>) -> Vec<i64> {
        rows.into_iter()
            .filter(|(id, v)| self.product(*id) && v.unwrap_or(0) <= snapshot && !present.contains(&format!("product:{id}")))
            .map(|(id, _)| id)
            .collect()
    }

    fn stale_notifications(self, rows: Vec<(String, String, Option<i64>)>, snapshot: i64, present: &HashSet<String>) -> Vec<String> {
        rows.into_iter()
            .filter(|(id, user, v)| self.user(user) && v.unwrap_or(0) <= snapshot && !present.contains(&format!("notification:{id}")))
            .map(|(id, _, _)| id)
            .collect()
    }
}

/// One shard's writer into PostgreSQL.
pub struct PostgresTarget {
    owner: Owner,
    shard_id: i32,
    currency: Currency,
    catalog: Link,
    /// `None`: the notifications live in the catalog's database.
    notifications: Option<Link>,
    /// The highest product id this writer has moved the old writers' id sequence past.
    sequence_floor: i64,
    sql: Sql,
}

impl PostgresTarget {
    /// Writes `plan` (and the cursor, if given) in one transaction per database, catalog committed first.
    async fn write(&mut self, plan: &Plan, mode: Mode, cursor: Option<u64>) -> Result<(), Blame> {
        let top = plan.max_product_id().filter(|id| *id > self.sequence_floor);
        let next = match cursor.map(i64::try_from).transpose() {
            Ok(next) => next,
            Err(_) => return Err(Blame::target(TargetError::Unavailable("cursor does not fit a bigint".into()))),
        };
        let chunking = if mode == Mode::OneByOne { Chunking::OneByOne } else { Chunking::Batched };
        let (products_sql, notifications_sql) = if mode == Mode::Copy {
            (&self.sql.products_staged, &self.sql.notifications_staged)
        } else {
            (&self.sql.products_unnest, &self.sql.notifications_unnest)
        };
        let catalog = self.catalog.client().await.map_err(Blame::target)?;
        let other = match &mut self.notifications {
            Some(link) => Some(link.client().await.map_err(Blame::target)?),
            None => None,
        };
        let catalog_tx = catalog.transaction().await.map_err(|e| Blame { lsn: None, failure: Failure::from(e) })?;
        let other_tx = match other {
            Some(client) => Some(client.transaction().await.map_err(|e| Blame { lsn: None, failure: Failure::from(e) })?),
            None => None,
        };
        let notifications_tx = other_tx.as_ref().unwrap_or(&catalog_tx);
        if mode == Mode::Copy {
            write::stage_products(&catalog_tx, &plan.products).await?;
            write::stage_notifications(notifications_tx, &plan.notifications).await?;
        }
        let mut steps = write::catalog_steps(&catalog_tx, plan, chunking, products_sql, top.is_some());
        steps.extend(write::notification_steps(notifications_tx, plan, chunking, notifications_sql));
        if let Some(next) = next {
            steps.push(write::cursor_step(&catalog_tx, self.shard_id, next));
            if let Some(tx) = &other_tx {
                steps.push(write::cursor_step(tx, self.shard_id, next));
            }
        }
        write::run(steps).await?;
        catalog_tx.commit().await.map_err(|e| Blame { lsn: None, failure: Failure::Other(link::describe(&e)) })?;
        if let Some(tx) = other_tx {
            tx.commit().await.map_err(|e| Blame { lsn: None, failure: Failure::Other(link::describe(&e)) })?;
        }
        if let Some(top) = top {
            self.sequence_floor = top;
        }
        Ok(())
    }

    /// Writes `plan`; when PostgreSQL refuses a value, writes it again row by row to name the record it
    /// refuses (`Rejected`, nothing written) or, if no single row is refused, to write it after all.
    async fn write_or_blame(&mut self, plan: &Plan, mode: Mode, cursor: Option<u64>) -> Result<(), TargetError> {
        match self.write(plan, mode, cursor).await {
            Ok(()) => Ok(()),
            Err(Blame { failure: Failure::Content(_), .. }) => match self.write(plan, Mode::OneByOne, cursor).await {
                Ok(()) => Ok(()),
                Err(Blame { lsn: Some(lsn), failure: Failure::Content(reason) }) => {
                    Err(TargetError::Rejected { lsn, reason: format!("PostgreSQL refused it: {reason}") })
                }
                Err(blame) => Err(blame.failure.unavailable()),
            },
            Err(blame) => Err(blame.failure.unavailable()),
        }
    }

    /// Any failure but a refused record makes the connections suspect: the next call reopens them.
    fn settle<T>(&mut self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        if matches!(result, Err(TargetError::Unavailable(_))) {
            self.catalog.reset();
            if let Some(link) = &mut self.notifications {
                link.reset();
            }
        }
        result
    }

    async fn read_cursor(&mut self) -> Result<Option<u64>, TargetError> {
        let catalog = write::cursor(self.catalog.client().await?, self.shard_id).await?;
        let cursor = match &mut self.notifications {
            None => catalog,
            Some(link) => {
                let notifications = write::cursor(link.client().await?, self.shard_id).await?;
                // A database never written needs the bootstrap, whatever the other one holds.
                catalog.zip(notifications).map(|(a, b)| a.min(b))
            }
        };
        cursor
            .map(|c| u64::try_from(c).map_err(|_| TargetError::Unavailable(format!("kassa_cursors holds a negative lsn {c}"))))
            .transpose()
    }

    async fn apply_records(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        let plan = Plan::of_records(records, self.currency)?;
        self.write_or_blame(&plan, Mode::Batched, Some(next_lsn)).await
    }

    async fn load_entities(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        let plan = Plan::of_entities(entities, self.currency)?;
        self.write_or_blame(&plan, Mode::Copy, None).await
    }

    async fn remove_stale(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), TargetError> {
        let version = rows::version(snapshot_lsn).map_err(TargetError::Unavailable)?;
        let next = rows::version(snapshot_lsn.saturating_add(1)).map_err(TargetError::Unavailable)?;
        let owner = self.owner;
        let shared = self.notifications.is_none();
        let tx = self.catalog.client().await?.transaction().await.map_err(unavailable)?;
        let products = write::product_versions(&tx).await?;
        write::remove_products(&tx, &owner.stale_products(products, version, present), version).await?;
        if shared {
            let notifications = write::notification_versions(&tx).await?;
            write::remove_notifications(&tx, &owner.stale_notifications(notifications, version, present), version).await?;
        }
        write::sequence_past_products(&tx).await?;
        write::set_cursor(&tx, self.shard_id, next).await?;
        tx.commit().await.map_err(unavailable)?;
        if let Some(link) = &mut self.notifications {
            let tx = link.client().await?.transaction().await.map_err(unavailable)?;
            let notifications = write::notification_versions(&tx).await?;
            write::remove_notifications(&tx, &owner.stale_notifications(notifications, version, present), version).await?;
            write::set_cursor(&tx, self.shard_id, next).await?;
            tx.commit().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn read_rows(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        let mut out = BTreeMap::new();
        for row in write::read_products(self.catalog.client().await?).await? {
            if self.owner.product(row.id) {
                out.insert(row.key(), row.canonical());
            }
        }
        let client = match &mut self.notifications {
            Some(link) => link.client().await?,
            None => self.catalog.client().await?,
        };
        let notifications = write::read_notifications(client).await?;
        for row in notifications {
            if self.owner.user(&row.user_id) {
                out.insert(row.key(), row.canonical());
            }
        }
        Ok(out)
    }
}

impl Target for PostgresTarget {
    async fn cursor(&mut self) -> Result<Option<u64>, TargetError> {
        let result = self.read_cursor().await;
        self.settle(result)
    }

    async fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        let result = self.apply_records(records, next_lsn).await;
        self.settle(result)
    }

    /// A refused entity is `Rejected` with its version as the LSN (the record that last changed it).
    async fn load(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        let result = self.load_entities(entities).await;
        self.settle(result)
    }

    /// Rows removed here get a tombstone at `snapshot_lsn`: every record up to the snapshot is older
    /// than the snapshot's word that the row is gone.
    async fn finish_load(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), TargetError> {
        let result = self.remove_stale(snapshot_lsn, present).await;
        self.settle(result)
    }

    async fn read_back(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        let result = self.read_rows().await;
        self.settle(result)
    }

    /// An entity the table cannot hold (an id past bigint) renders as such, so `verify` reports it.
    fn render(&self, entity: &Entity) -> Vec<(String, String)> {
        let row = match entity {
            Entity::Product(p) => ProductRow::of(p, self.currency).map(|r| r.canonical()),
            Entity::Notification(n) => NotificationRow::of(n).map(|r| r.canonical()),
            Entity::Basket(_) | Entity::Payment(_) => return Vec::new(),
        };
        vec![(entity.key(), row.unwrap_or_else(|reason| format!("not representable in PostgreSQL: {reason}")))]
    }
}
