//! The statements of the PostgreSQL target: version-guarded upserts and deletes (one multi-row statement
//! per kind), COPY staging for a bootstrap, cursors, and the reads of `read_back` and `finish_load`.
//!
//! The guard is one statement with the row: `INSERT INTO kassa_versions … ON CONFLICT … DO UPDATE …
//! WHERE kassa_versions.version < EXCLUDED.version RETURNING id` says which rows the batch may touch,
//! and the row statement joins on it. A delete leaves its version behind with `deleted` set: a
//! tombstone, so a replayed older upsert finds a newer version and passes by.
//!
//! A batch's statements are pipelined: sent back to back on the connection, answered in order. When one
//! fails, PostgreSQL refuses the rest (the transaction is aborted), so the first error in sending order
//! is the real one, and with one statement per record it names the record.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use futures::future::{MaybeDone, maybe_done};
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::link::{Failure, unavailable};
use super::plan::{Plan, Staged};
use super::rows::{NotificationRow, PgTime, ProductRow};
use crate::TargetError;

/// Serialises moving the old writers' id sequence (shards run concurrently; `setval` is not
/// transactional, so without it two shards could move it backwards).
const SEQUENCE_LOCK: i64 = 0x6b61_7373_615f_7371;
/// Serialises the DDL of concurrent connects (`CREATE TABLE IF NOT EXISTS` races itself otherwise).
pub const SCHEMA_LOCK: i64 = 0x6b61_7373_615f_6464;

/// A refused statement, and the LSN of its record when it carried only one.
#[derive(Debug)]
pub struct Blame {
    pub lsn: Option<u64>,
    pub failure: Failure,
}

impl Blame {
    fn of(lsn: Option<u64>) -> impl FnOnce(tokio_postgres::Error) -> Blame {
        move |e| Blame { lsn, failure: Failure::from(e) }
    }

    pub fn target(e: TargetError) -> Blame {
        Blame { lsn: None, failure: Failure::Other(e.to_string()) }
    }
}

pub type Step<'a> = Pin<Box<dyn Future<Output = Result<(), Blame>> + Send + 'a>>;

/// How rows reach a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// One statement per kind (and operation) for the whole plan.
    Batched,
    /// One statement per row, to find the record PostgreSQL refuses.
    OneByOne,
}

/// Sends `steps` back to back and reports the first failure in sending order. Every poll visits the
/// steps in order, so the first poll of each (which sends its statement) follows the one before.
pub async fn run(steps: Vec<Step<'_>>) -> Result<(), Blame> {
    let mut steps: Vec<MaybeDone<Step<'_>>> = steps.into_iter().map(maybe_done).collect();
    poll_fn(|cx| {
        let mut done = true;
        for step in &mut steps {
            done &= Pin::new(step).poll(cx).is_ready();
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    for step in &mut steps {
        if let Some(Err(blame)) = Pin::new(step).take_output() {
            return Err(blame);
        }
    }
    Ok(())
}

const PRODUCTS_UNNEST: &str = "SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
     $6::text[], $7::timestamptz[], $8::timestamptz[], $9::bigint[]) \
     AS u(id, name, description, price, stock, category, created_at, updated_at, version)";
const PRODUCTS_STAGED: &str =
    "SELECT id, name, description, price, stock, category, created_at, updated_at, version FROM kassa_stage_products";

fn put_products_sql(source: &str) -> String {
    format!(
        "WITH input AS ({source}), \
         passed AS ( \
             INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
             SELECT 'product', input.id::text, input.version, false FROM input \
             ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = false \
             WHERE v.version < EXCLUDED.version \
             RETURNING v.id) \
         INSERT INTO products AS p (id, name, description, price, stock, category, created_at, updated_at) \
         SELECT i.id, i.name, i.description, i.price::numeric, i.stock, i.category, i.created_at, i.updated_at \
         FROM input i JOIN passed ON passed.id = i.id::text \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, \
             price = EXCLUDED.price, stock = EXCLUDED.stock, category = EXCLUDED.category, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
    )
}

const DELETE_PRODUCTS: &str = "WITH input AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]) AS u(id, version)), \
     passed AS ( \
         INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
         SELECT 'product', input.id::text, input.version, true FROM input \
         ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = true \
         WHERE v.version < EXCLUDED.version \
         RETURNING v.id) \
     DELETE FROM products p USING passed WHERE p.id = passed.id::bigint";

const NOTIFICATIONS_UNNEST: &str = "SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], \
     $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::bigint[]) \
     AS u(id, user_id, title, message, \"type\", status, priority, channel, template_id, data, \
          created_at, updated_at, sent_at, read_at, expires_at, version)";
const NOTIFICATIONS_STAGED: &str = "SELECT id, user_id, title, message, \"type\", status, priority, channel, template_id, \
     data, created_at, updated_at, sent_at, read_at, expires_at, version FROM kassa_stage_notifications";

fn put_notifications_sql(source: &str) -> String {
    format!(
        "WITH input AS ({source}), \
         passed AS ( \
             INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
             SELECT 'notification', input.id, input.version, false FROM input \
             ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = false \
             WHERE v.version < EXCLUDED.version \
             RETURNING v.id) \
         INSERT INTO notifications AS n (id, user_id, title, message, \"type\", status, priority, channel, \
             template_id, data, created_at, updated_at, sent_at, read_at, expires_at) \
         SELECT i.id, i.user_id, i.title, i.message, i.\"type\", i.status, i.priority, i.channel, i.template_id, \
             i.data::json, i.created_at, i.updated_at, i.sent_at, i.read_at, i.expires_at \
         FROM input i JOIN passed ON passed.id = i.id \
         ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, title = EXCLUDED.title, \
             message = EXCLUDED.message, \"type\" = EXCLUDED.\"type\", status = EXCLUDED.status, \
             priority = EXCLUDED.priority, channel = EXCLUDED.channel, template_id = EXCLUDED.template_id, \
             data = EXCLUDED.data, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             sent_at = EXCLUDED.sent_at, read_at = EXCLUDED.read_at, expires_at = EXCLUDED.expires_at"
    )
}

const DELETE_NOTIFICATIONS: &str = "WITH input AS (SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS u(id, version)), \
     passed AS ( \
         INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
         SELECT 'notification', input.id, input.version, true FROM input \
         ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = true \
         WHERE v.version < EXCLUDED.version \
         RETURNING v.id) \
     DELETE FROM notifications n USING passed WHERE n.id = passed.id";

/// Moves the sequence behind `products.id`'s default past every id in the table (never backwards), so
/// an old writer's next insert cannot collide with a mirrored product. Tables without such a default
/// are left alone.
const BUMP_SEQUENCE: &str = "SELECT setval(s.seq, greatest(m.top, coalesce(pg_sequence_last_value(s.seq), 0))) \
     FROM (SELECT pg_get_serial_sequence('products', 'id')::regclass AS seq) s, \
          (SELECT max(id) AS top FROM products) m \
     WHERE s.seq IS NOT NULL AND m.top > 0";

const SET_CURSOR: &str = "INSERT INTO kassa_cursors (shard, next_lsn) VALUES ($1, $2) \
     ON CONFLICT (shard) DO UPDATE SET next_lsn = EXCLUDED.next_lsn";

fn blame_of<T>(rows: &[Staged<T>]) -> Option<u64> {
    match rows {
        [only] => Some(only.lsn),
        _ => None,
    }
}

fn chunks<T>(rows: &[Staged<T>], chunking: Chunking) -> Vec<&[Staged<T>]> {
    if rows.is_empty() {
        return Vec::new();
    }
    match chunking {
        Chunking::Batched => vec![rows],
        Chunking::OneByOne => rows.chunks(1).collect(),
    }
}

fn put_products<'a>(tx: &'a Transaction<'_>, rows: &'a [Staged<ProductRow>], sql: &'a str) -> Step<'a> {
    Box::pin(async move {
        let v = |s: &'a Staged<ProductRow>| &s.value;
        let id: Vec<i64> = rows.iter().map(|s| v(s).id).collect();
        let name: Vec<Option<&str>> = rows.iter().map(|s| v(s).name.as_deref()).collect();
        let description: Vec<Option<&str>> = rows.iter().map(|s| v(s).description.as_deref()).collect();
        let price: Vec<Option<&str>> = rows.iter().map(|s| v(s).price.as_deref()).collect();
        let stock: Vec<Option<i64>> = rows.iter().map(|s| v(s).stock).collect();
        let category: Vec<Option<&str>> = rows.iter().map(|s| v(s).category.as_deref()).collect();
        let created_at: Vec<Option<PgTime>> = rows.iter().map(|s| v(s).created_at).collect();
        let updated_at: Vec<Option<PgTime>> = rows.iter().map(|s| v(s).updated_at).collect();
        let version: Vec<i64> = rows.iter().map(|s| s.version).collect();
        let params: [(&(dyn ToSql + Sync), Type); 9] = [
            (&id, Type::INT8_ARRAY),
            (&name, Type::TEXT_ARRAY),
            (&description, Type::TEXT_ARRAY),
            (&price, Type::TEXT_ARRAY),
            (&stock, Type::INT8_ARRAY),
            (&category, Type::TEXT_ARRAY),
            (&created_at, Type::TIMESTAMPTZ_ARRAY),
            (&updated_at, Type::TIMESTAMPTZ_ARRAY),
            (&version, Type::INT8_ARRAY),
        ];
        tx.execute_typed(sql, &params).await.map(drop).map_err(Blame::of(blame_of(rows)))
    })
}

fn delete_products<'a>(tx: &'a Transaction<'_>, rows: &'a [Staged<i64>]) -> Step<'a> {
    Box::pin(async move {
        let id: Vec<i64> = rows.iter().map(|s| s.value).collect();
        let version: Vec<i64> = rows.iter().map(|s| s.version).collect();
        tx.execute_typed(DELETE_PRODUCTS, &[(&id, Type::INT8_ARRAY), (&version, Type::INT8_ARRAY)])
            .await
            .map(drop)
            .map_err(Blame::of(blame_of(rows)))
    })
}

fn put_notifications<'a>(tx: &'a Transaction<'_>, rows: &'a [Staged<NotificationRow>], sql: &'a str) -> Step<'a> {
    Box::pin(async move {
        let text = |f: fn(&NotificationRow) -> &str| -> Vec<&'a str> { rows.iter().map(|s| f(&s.value)).collect() };
        let id = text(|n| &n.id);
        let user_id = text(|n| &n.user_id);
        let title = text(|n| &n.title);
        let message = text(|n| &n.message);
        let kind = text(|n| &n.kind);
        let status = text(|n| &n.status);
        let priority = text(|n| &n.priority);
        let channel = text(|n| &n.channel);
        let template_id: Vec<Option<&str>> = rows.iter().map(|s| s.value.template_id.as_deref()).collect();
        let data: Vec<Option<&str>> = rows.iter().map(|s| s.value.data.as_deref()).collect();
        let time = |f: fn(&NotificationRow) -> Option<PgTime>| -> Vec<Option<PgTime>> { rows.iter().map(|s| f(&s.value)).collect() };
        let created_at = time(|n| n.created_at);
        let updated_at = time(|n| n.updated_at);
        let sent_at = time(|n| n.sent_at);
        let read_at = time(|n| n.read_at);
        let expires_at = time(|n| n.expires_at);
        let version: Vec<i64> = rows.iter().map(|s| s.version).collect();
        let params: [(&(dyn ToSql + Sync), Type); 16] = [
            (&id, Type::TEXT_ARRAY),
            (&user_id, Type::TEXT_ARRAY),
            (&title, Type::TEXT_ARRAY),
            (&message, Type::TEXT_ARRAY),
            (&kind, Type::TEXT_ARRAY),
            (&status, Type::TEXT_ARRAY),
            (&priority, Type::TEXT_ARRAY),
            (&channel, Type::TEXT_ARRAY),
            (&template_id, Type::TEXT_ARRAY),
            (&data, Type::TEXT_ARRAY),
            (&created_at, Type::TIMESTAMPTZ_ARRAY),
            (&updated_at, Type::TIMESTAMPTZ_ARRAY),
            (&sent_at, Type::TIMESTAMPTZ_ARRAY),
            (&read_at, Type::TIMESTAMPTZ_ARRAY),
            (&expires_at, Type::TIMESTAMPTZ_ARRAY),
            (&version, Type::INT8_ARRAY),
        ];
        tx.execute_typed(sql, &params).await.map(drop).map_err(Blame::of(blame_of(rows)))
    })
}

fn delete_notifications<'a>(tx: &'a Transaction<'_>, rows: &'a [Staged<String>]) -> Step<'a> {
    Box::pin(async move {
        let id: Vec<&str> = rows.iter().map(|s| s.value.as_str()).collect();
        let version: Vec<i64> = rows.iter().map(|s| s.version).collect();
        tx.execute_typed(DELETE_NOTIFICATIONS, &[(&id, Type::TEXT_ARRAY), (&version, Type::INT8_ARRAY)])
            .await
            .map(drop)
            .map_err(Blame::of(blame_of(rows)))
    })
}

/// Statements that are not any one record's.
fn plain<'a>(tx: &'a Transaction<'_>, sql: &'static str, params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>) -> Step<'a> {
    Box::pin(async move {
        let refs: Vec<(&(dyn ToSql + Sync), Type)> = params.iter().map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone())).collect();
        tx.execute_typed(sql, &refs).await.map(drop).map_err(Blame::of(None))
    })
}

/// The catalog's statements of `plan`. `bump_sequence`: the plan writes a product id the sequence may
/// not be past yet.
pub fn catalog_steps<'a>(
    tx: &'a Transaction<'_>,
    plan: &'a Plan,
    chunking: Chunking,
    put_sql: &'a str,
    bump_sequence: bool,
) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for rows in chunks(&plan.products, chunking) {
        steps.push(put_products(tx, rows, put_sql));
    }
    for rows in chunks(&plan.product_deletes, chunking) {
        steps.push(delete_products(tx, rows));
    }
    if bump_sequence {
        steps.push(plain(tx, "SELECT pg_advisory_xact_lock($1)", vec![(Box::new(SEQUENCE_LOCK), Type::INT8)]));
        steps.push(plain(tx, BUMP_SEQUENCE, Vec::new()));
    }
    steps
}

pub fn notification_steps<'a>(tx: &'a Transaction<'_>, plan: &'a Plan, chunking: Chunking, put_sql: &'a str) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for rows in chunks(&plan.notifications, chunking) {
        steps.push(put_notifications(tx, rows, put_sql));
    }
    for rows in chunks(&plan.notification_deletes, chunking) {
        steps.push(delete_notifications(tx, rows));
    }
    steps
}

pub fn cursor_step<'a>(tx: &'a Transaction<'_>, shard: i32, next_lsn: i64) -> Step<'a> {
    plain(tx, SET_CURSOR, vec![(Box::new(shard), Type::INT4), (Box::new(next_lsn), Type::INT8)])
}

/// Upsert statements fed by `UNNEST` of array parameters.
pub fn put_products_unnest() -> String {
    put_products_sql(PRODUCTS_UNNEST)
}

pub fn put_notifications_unnest() -> String {
    put_notifications_sql(NOTIFICATIONS_UNNEST)
}

/// Upsert statements fed by the session's COPY staging tables.
pub fn put_products_staged() -> String {
    put_products_sql(PRODUCTS_STAGED)
}

pub fn put_notifications_staged() -> String {
    put_notifications_sql(NOTIFICATIONS_STAGED)
}

/// COPYs the plan's products into the staging table (binary COPY: the same exact values as the
/// statements' parameters).
pub async fn stage_products(tx: &Transaction<'_>, rows: &[Staged<ProductRow>]) -> Result<(), Blame> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in("COPY kassa_stage_products (id, name, description, price, stock, category, created_at, updated_at, version) FROM STDIN (FORMAT binary)")
        .await
        .map_err(Blame::of(None))?;
    let types = [Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::INT8];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for s in rows {
        let r = &s.value;
        writer
            .as_mut()
            .write(&[&r.id, &r.name, &r.description, &r.price, &r.stock, &r.category, &r.created_at, &r.updated_at, &s.version])
            .await
            .map_err(Blame::of(None))?;
    }
    writer.finish().await.map(drop).map_err(Blame::of(None))
}

pub async fn stage_notifications(tx: &Transaction<'_>, rows: &[Staged<NotificationRow>]) -> Result<(), Blame> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = tx
        .copy_in(
            "COPY kassa_stage_notifications (id, user_id, title, message, \"type\", status, priority, channel, template_id, \
             data, created_at, updated_at, sent_at, read_at, expires_at, version) FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(Blame::of(None))?;
    let mut types = vec![Type::TEXT; 10];
    types.extend([Type::TIMESTAMPTZ; 5]);
    types.push(Type::INT8);
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for s in rows {
        let n = &s.value;
        writer
            .as_mut()
            .write(&[
                &n.id,
                &n.user_id,
                &n.title,
                &n.message,
                &n.kind,
                &n.status,
                &n.priority,
                &n.channel,
                &n.template_id,
                &n.data,
                &n.created_at,
                &n.updated_at,
                &n.sent_at,
                &n.read_at,
                &n.expires_at,
                &s.version,
            ])
            .await
            .map_err(Blame::of(None))?;
    }
    writer.finish().await.map(drop).map_err(Blame::of(None))
}

/// Every product row with the version Kassa last applied to it (`None`: a row Kassa never wrote).
pub async fn product_versions(tx: &Transaction<'_>) -> Result<Vec<(i64, Option<i64>)>, TargetError> {
    let rows = tx
        .query(
            "SELECT p.id, v.version FROM products p \
             LEFT JOIN kassa_versions v ON v.entity = 'product' AND v.id = p.id::text",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every notification row's id and user id with the version Kassa last applied to it.
pub async fn notification_versions(tx: &Transaction<'_>) -> Result<Vec<(String, String, Option<i64>)>, TargetError> {
    let rows = tx
        .query(
            "SELECT n.id, n.user_id, v.version FROM notifications n \
             LEFT JOIN kassa_versions v ON v.entity = 'notification' AND v.id = n.id",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Deletes `ids` and leaves a tombstone at `version` for each (never lowering a stored version).
pub async fn remove_products(tx: &Transaction<'_>, ids: &[i64], version: i64) -> Result<(), TargetError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute_typed(
        "WITH gone AS (DELETE FROM products WHERE id = ANY($1) RETURNING id) \
         INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
         SELECT 'product', gone.id::text, $2, true FROM gone \
         ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = true \
         WHERE v.version <= EXCLUDED.version",
        &[(&ids, Type::INT8_ARRAY), (&version, Type::INT8)],
    )
    .await
    .map(drop)
    .map_err(unavailable)
}

pub async fn remove_notifications(tx: &Transaction<'_>, ids: &[String], version: i64) -> Result<(), TargetError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute_typed(
        "WITH gone AS (DELETE FROM notifications WHERE id = ANY($1) RETURNING id) \
         INSERT INTO kassa_versions AS v (entity, id, version, deleted) \
         SELECT 'notification', gone.id, $2, true FROM gone \
         ON CONFLICT (entity, id) DO UPDATE SET version = EXCLUDED.version, deleted = true \
         WHERE v.version <= EXCLUDED.version",
        &[(&ids, Type::TEXT_ARRAY), (&version, Type::INT8)],
    )
    .await
    .map(drop)
    .map_err(unavailable)
}

pub async fn sequence_past_products(tx: &Transaction<'_>) -> Result<(), TargetError> {
    tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[(&SEQUENCE_LOCK, Type::INT8)]).await.map_err(unavailable)?;
    tx.execute_typed(BUMP_SEQUENCE, &[]).await.map(drop).map_err(unavailable)
}

pub async fn set_cursor(tx: &Transaction<'_>, shard: i32, next_lsn: i64) -> Result<(), TargetError> {
    tx.execute_typed(SET_CURSOR, &[(&shard, Type::INT4), (&next_lsn, Type::INT8)]).await.map(drop).map_err(unavailable)
}

pub async fn cursor(client: &tokio_postgres::Client, shard: i32) -> Result<Option<i64>, TargetError> {
    let row = client
        .query_typed_opt("SELECT next_lsn FROM kassa_cursors WHERE shard = $1", &[(&shard, Type::INT4)])
        .await
        .map_err(unavailable)?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn read_products(client: &tokio_postgres::Client) -> Result<Vec<ProductRow>, TargetError> {
    let rows = client
        .query("SELECT id, name, description, price::text, stock, category, created_at, updated_at FROM products", &[])
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|r| {
            Ok(ProductRow {
                id: r.try_get(0).map_err(unavailable)?,
                name: r.try_get(1).map_err(unavailable)?,
                description: r.try_get(2).map_err(unavailable)?,
                price: r.try_get(3).map_err(unavailable)?,
                stock: r.try_get(4).map_err(unavailable)?,
                category: r.try_get(5).map_err(unavailable)?,
                created_at: r.try_get(6).map_err(unavailable)?,
                updated_at: r.try_get(7).map_err(unavailable)?,
            })
        })
        .collect()
}

pub async fn read_notifications(client: &tokio_postgres::Client) -> Result<Vec<NotificationRow>, TargetError> {
    let rows = client
        .query(
            "SELECT id, user_id, title, message, \"type\", status, priority, channel, template_id, data::text, \
             created_at, updated_at, sent_at, read_at, expires_at FROM notifications",
            &[],
        )
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|r| {
            Ok(NotificationRow {
                id: r.try_get(0).map_err(unavailable)?,
                user_id: r.try_get(1).map_err(unavailable)?,
                title: r.try_get(2).map_err(unavailable)?,
                message: r.try_get(3).map_err(unavailable)?,
                kind: r.try_get(4).map_err(unavailable)?,
                status: r.try_get(5).map_err(unavailable)?,
                priority: r.try_get(6).map_err(unavailable)?,
                channel: r.try_get(7).map_err(unavailable)?,
                template_id: r.try_get(8).map_err(unavailable)?,
                data: r.try_get(9).map_err(unavailable)?,
                created_at: r.try_get(10).map_err(unavailable)?,
                updated_at: r.try_get(11).map_err(unavailable)?,
                sent_at: r.try_get(12).map_err(unavailable)?,
                read_at: r.try_get(13).map_err(unavailable)?,
                expires_at: r.try_get(14).map_err(unavailable)?,
            })
        })
        .collect()
}
