//! MariaDB: payments mirrored into the old `payment_service` tables `payments` and `payment_items`
//! (seed-contract §4.7), as the old reporting reads them.
//!
//! Every batch is one transaction: the versions of the batch's payments are locked in `kassa_versions`,
//! only the payments newer than what the mirror holds are written (their items replaced with them), and
//! the shard's cursor in `kassa_cursors` moves in the same commit. Each statement carries many rows.

mod rows;
mod schema;
mod sql;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use kassa_engine::placement::shard_of_user;
use kassa_engine::{Currency, Event, FeedRecord, Payment};
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, TxOpts, Value};

use crate::config::MariadbConfig;
use crate::{Connect, Entity, Target, TargetError};
use rows::{Columns, ITEM_COLUMNS, ItemRow, PAYMENT_COLUMNS, PaymentRow, values_of};

/// Longest one target operation may take before it counts as the target being unavailable (the driver
/// has no connect timeout of its own; a black-holed host would otherwise hang the shard's writer).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The `entity` of payments in `kassa_versions`.
const ENTITY: &str = "payment";

/// Session settings of every connection: values a column cannot hold are errors, never silently
/// truncated or zeroed (so they become dead letters, not wrong rows); times are UTC.
const SESSION_SETUP: [&str; 2] = [
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION time_zone = '+00:00'",
];

/// Opens the MariaDB mirror of each shard.
#[derive(Clone, Debug)]
pub struct MariadbConnect {
    url: String,
    currency: Currency,
}

impl MariadbConnect {
    pub fn new(cfg: &MariadbConfig) -> MariadbConnect {
        MariadbConnect { url: cfg.url.clone(), currency: Currency::USD }
    }

    /// The shop currency, for a payment whose own currency code is unknown (default USD).
    pub fn with_currency(mut self, currency: Currency) -> MariadbConnect {
        self.currency = currency;
        self
    }
}

/// One shard's writer into MariaDB.
pub struct MariadbTarget {
    pool: Pool,
    shard: usize,
    shards: u32,
    currency: Currency,
}

impl Connect for MariadbConnect {
    type Target = MariadbTarget;

    fn name(&self) -> &'static str {
        "mariadb"
    }

    fn schema(&self) -> String {
        schema::script()
    }

    async fn connect(&self, shard: usize, shards: usize) -> Result<MariadbTarget, TargetError> {
        let opts = Opts::from_url(&self.url).map_err(|e| TargetError::Unavailable(format!("MariaDB URL: {e}")))?;
        // One connection per shard's writer: its operations run one after another.
        let constraints = PoolConstraints::new(0, 1).unwrap_or_default();
        let opts = OptsBuilder::from_opts(opts).setup(SESSION_SETUP.to_vec()).pool_opts(PoolOpts::default().with_constraints(constraints));
        let shards = u32::try_from(shards).map_err(|_| TargetError::Unavailable(format!("{shards} shards is too many")))?;
        let target = MariadbTarget { pool: Pool::new(opts), shard, shards, currency: self.currency };
        timed(async {
            let mut conn = target.pool.get_conn().await.map_err(unavailable)?;
            for statement in schema::statements() {
                conn.query_drop(statement).await.map_err(unavailable)?;
            }
            Ok(())
        })
        .await?;
        Ok(target)
    }
}

/// A payment to write, with the LSN a rejection names.
struct Candidate {
    lsn: u64,
    version: u64,
    row: PaymentRow,
}

/// Why a write did not commit.
enum WriteError {
    /// MariaDB refused a value of some row of the batch (which one is found by [`MariadbTarget::culprit`]).
    Refused(String),
    Failed(TargetError),
}

impl From<mysql_async::Error> for WriteError {
    fn from(e: mysql_async::Error) -> WriteError {
        match &e {
            mysql_async::Error::Server(s) if refuses_content(s) => WriteError::Refused(s.to_string()),
            _ => WriteError::Failed(unavailable(e)),
        }
    }
}

/// Data exceptions (class 22), integrity violations (class 23, e.g. the `json_valid` check) and the
/// string-conversion errors MariaDB files under HY000: the values are the problem, not the server.
fn refuses_content(e: &mysql_async::ServerError) -> bool {
    e.state.starts_with("22") || e.state.starts_with("23") || matches!(e.code, 1366 | 1367 | 4025)
}

fn unavailable(e: mysql_async::Error) -> TargetError {
    TargetError::Unavailable(format!("MariaDB: {e}"))
}

/// A row of `id` and one more column, decoded by `second`.
fn id_and<T>(
    row: mysql_async::Row,
    names: &'static [&'static str; 2],
    second: fn(&mut Columns) -> Result<T, String>,
) -> Result<(String, T), TargetError> {
    let decode = || -> Result<(String, T), String> {
        let mut c = Columns::new(values_of(row), names)?;
        Ok((c.text()?, second(&mut c)?))
    };
    decode().map_err(|e| TargetError::Unavailable(format!("MariaDB row: {e}")))
}

async fn timed<T>(op: impl Future<Output = Result<T, TargetError>>) -> Result<T, TargetError> {
    tokio::time::timeout(OPERATION_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| Err(TargetError::Unavailable(format!("MariaDB did not answer within {OPERATION_TIMEOUT:?}"))))
}

fn read_committed() -> TxOpts {
    // No gap locks: shards write disjoint ids, and the version rows are locked one by one.
    let mut opts = TxOpts::new();
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    opts
}

impl MariadbTarget {
    fn owns(&self, user_id: &str) -> bool {
        shard_of_user(user_id, self.shards) as usize == self.shard
    }

    fn shard_value(&self) -> Value {
        Value::UInt(self.shard as u64)
    }

    /// Writes the candidates that are newer than the mirror (and the cursor, if given) in one transaction;
    /// with `commit` off the transaction is rolled back (a trial write).
    async fn write(&self, batch: &[&Candidate], cursor: Option<u64>, commit: bool) -> Result<(), WriteError> {
        let mut conn = self.pool.get_conn().await.map_err(|e| WriteError::Failed(unavailable(e)))?;
        let mut tx = conn.start_transaction(read_committed()).await.map_err(|e| WriteError::Failed(unavailable(e)))?;
        let ids: Vec<&str> = batch.iter().map(|c| c.row.id.as_str()).collect();
        let stored = self.lock_versions(&mut tx, &ids).await?;
        let winners: Vec<&Candidate> =
            batch.iter().copied().filter(|c| stored.get(c.row.id.as_str()).is_none_or(|v| c.version > *v)).collect();
        if !winners.is_empty() {
            for chunk in winners.chunks(sql::ROWS_PER_STATEMENT) {
                let params: Vec<Value> = chunk.iter().flat_map(|c| c.row.values()).collect();
                tx.exec_drop(sql::upsert("payments", &PAYMENT_COLUMNS, chunk.len(), &PAYMENT_COLUMNS[1..]), params).await?;
            }
            let winner_ids: Vec<&str> = winners.iter().map(|c| c.row.id.as_str()).collect();
            for chunk in winner_ids.chunks(sql::IDS_PER_STATEMENT) {
                tx.exec_drop(format!("DELETE FROM payment_items WHERE payment_id IN ({})", sql::list(chunk.len())), chunk.to_vec()).await?;
            }
            let items: Vec<&ItemRow> = winners.iter().flat_map(|c| &c.row.items).collect();
            for chunk in items.chunks(sql::ROWS_PER_STATEMENT) {
                let params: Vec<Value> = chunk.iter().flat_map(|i| i.values()).collect();
                tx.exec_drop(sql::insert("payment_items", &ITEM_COLUMNS, chunk.len()), params).await?;
            }
            let versions: Vec<(&str, u64, bool)> = winners.iter().map(|c| (c.row.id.as_str(), c.version, false)).collect();
            self.set_versions(&mut tx, &versions).await?;
        }
        if let Some(next_lsn) = cursor {
            self.set_cursor(&mut tx, next_lsn).await?;
        }
        if commit {
            tx.commit().await?
        } else {
            tx.rollback().await?
        }
        Ok(())
    }

    /// The stored versions of `ids` (0 for none yet), each version row locked until the transaction ends.
    /// Missing version rows are created first (at version 0) so that the lock covers them too: two writers
    /// of one new payment then wait for each other instead of both seeing nothing.
    async fn lock_versions(&self, tx: &mut mysql_async::Transaction<'_>, ids: &[&str]) -> Result<HashMap<String, u64>, WriteError> {
        let mut stored = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(sql::IDS_PER_STATEMENT) {
            let rows = sql::rows(chunk.len(), "(?, ?, ?, 0, FALSE)");
            let params: Vec<Value> = chunk.iter().flat_map(|id| [Value::from(ENTITY), Value::from(*id), self.shard_value()]).collect();
            let insert =
                format!("INSERT INTO kassa_versions (entity, id, shard, version, deleted) VALUES {rows} ON DUPLICATE KEY UPDATE id = id");
            tx.exec_drop(insert, params).await?;
            let select =
                format!("SELECT id, version FROM kassa_versions WHERE entity = ? AND id IN ({}) FOR UPDATE", sql::list(chunk.len()));
            let params: Vec<Value> = std::iter::once(Value::from(ENTITY)).chain(chunk.iter().map(|id| Value::from(*id))).collect();
            let found: Vec<mysql_async::Row> = tx.exec(select, params).await?;
            for row in found {
                let (id, version) = id_and(row, &["id", "version"], Columns::uint).map_err(WriteError::Failed)?;
                stored.insert(id, version);
            }
        }
        Ok(stored)
    }

    async fn set_versions(&self, tx: &mut mysql_async::Transaction<'_>, versions: &[(&str, u64, bool)]) -> Result<(), WriteError> {
        for chunk in versions.chunks(sql::ROWS_PER_STATEMENT) {
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|(id, version, deleted)| {
                    [Value::from(ENTITY), Value::from(*id), self.shard_value(), Value::UInt(*version), Value::from(*deleted)]
                })
                .collect();
            tx.exec_drop(
                sql::upsert(
                    "kassa_versions",
                    &["entity", "id", "shard", "version", "deleted"],
                    chunk.len(),
                    &["shard", "version", "deleted"],
                ),
                params,
            )
            .await?;
        }
        Ok(())
    }

    async fn set_cursor(&self, tx: &mut mysql_async::Transaction<'_>, next_lsn: u64) -> Result<(), WriteError> {
        let upsert = "INSERT INTO kassa_cursors (shard, next_lsn) VALUES (?, ?) ON DUPLICATE KEY UPDATE next_lsn = VALUES(next_lsn)";
        tx.exec_drop(upsert, (self.shard_value(), Value::UInt(next_lsn))).await?;
        Ok(())
    }

    /// After MariaDB refused a batch: the first candidate it refuses alone, with the reason (trial writes,
    /// all rolled back). `None` if each passes alone.
    async fn culprit(&self, batch: &[&Candidate]) -> Result<Option<(usize, String)>, TargetError> {
        for (at, candidate) in batch.iter().enumerate() {
            match self.write(&[candidate], None, false).await {
                Ok(()) => {}
                Err(WriteError::Refused(reason)) => return Ok(Some((at, reason))),
                Err(WriteError::Failed(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Writes `batch` (and the cursor); a refused value becomes the rejection of its record's LSN.
    async fn write_or_reject(&self, batch: &[&Candidate], cursor: Option<u64>) -> Result<(), TargetError> {
        match self.write(batch, cursor, true).await {
            Ok(()) => Ok(()),
            Err(WriteError::Failed(e)) => Err(e),
            Err(WriteError::Refused(reason)) => match self.culprit(batch).await? {
                Some((at, why)) => Err(TargetError::Rejected { lsn: batch[at].lsn, reason: why }),
                None => Err(TargetError::Unavailable(format!("MariaDB refused the batch ({reason}) but none of its rows alone"))),
            },
        }
    }

    /// The last state of each payment among `payments`, as candidate rows; `Err` names the first payment
    /// whose values the old columns cannot hold.
    fn candidates<'a>(&self, payments: impl Iterator<Item = (u64, &'a Payment)>) -> Vec<(u64, Result<Candidate, String>)> {
        let mut last: BTreeMap<&str, (u64, &Payment)> = BTreeMap::new();
        for (lsn, p) in payments {
            match last.get(p.id.as_str()) {
                Some((_, held)) if held.version > p.version => {}
                _ => {
                    last.insert(&p.id, (lsn, p));
                }
            }
        }
        let mut out: Vec<(u64, Result<Candidate, String>)> = last
            .into_values()
            .map(|(lsn, p)| (lsn, PaymentRow::of(p, self.currency).map(|row| Candidate { lsn, version: p.version, row })))
            .collect();
        out.sort_by_key(|(lsn, _)| *lsn);
        out
    }

    async fn finish(&self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), WriteError> {
        let mut conn = self.pool.get_conn().await.map_err(|e| WriteError::Failed(unavailable(e)))?;
        let mut tx = conn.start_transaction(read_committed()).await.map_err(|e| WriteError::Failed(unavailable(e)))?;
        let mut absent: Vec<String> = Vec::new();
        let mut undecodable = None;
        tx.query_iter("SELECT id, user_id FROM payments")
            .await?
            .for_each(|row| match id_and(row, &["id", "user_id"], Columns::text) {
                Ok((id, user_id)) => {
                    if self.owns(&user_id) && !present.contains(&format!("payment:{id}")) {
                        absent.push(id);
                    }
                }
                Err(e) => undecodable = Some(e),
            })
            .await?;
        if let Some(e) = undecodable {
            return Err(WriteError::Failed(e));
        }
        let mut gone: Vec<&str> = Vec::new();
        for chunk in absent.chunks(sql::IDS_PER_STATEMENT) {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let stored = self.lock_versions(&mut tx, &ids).await?;
            gone.extend(ids.into_iter().filter(|id| stored.get(*id).is_none_or(|v| *v <= snapshot_lsn)));
        }
        for chunk in gone.chunks(sql::IDS_PER_STATEMENT) {
            let list = sql::list(chunk.len());
            tx.exec_drop(format!("DELETE FROM payments WHERE id IN ({list})"), chunk.to_vec()).await?;
            tx.exec_drop(format!("DELETE FROM payment_items WHERE payment_id IN ({list})"), chunk.to_vec()).await?;
        }
        // Tombstones at the snapshot's LSN: no record the snapshot already covers can bring a row back.
        let tombstones: Vec<(&str, u64, bool)> = gone.iter().map(|id| (*id, snapshot_lsn, true)).collect();
        self.set_versions(&mut tx, &tombstones).await?;
        self.set_cursor(&mut tx, snapshot_lsn + 1).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_all(&self) -> Result<BTreeMap<String, String>, TargetError> {
        let mut conn = self.pool.get_conn().await.map_err(unavailable)?;
        let select = format!("SELECT {} FROM payments", PAYMENT_COLUMNS.join(", "));
        // The binary protocol (a prepared statement) returns datetimes and doubles as typed values.
        let rows: Vec<mysql_async::Row> = conn.exec(select, ()).await.map_err(unavailable)?;
        let mut payments: BTreeMap<String, PaymentRow> = BTreeMap::new();
        for row in rows {
            let payment = PaymentRow::of_values(values_of(row)).map_err(|e| TargetError::Unavailable(format!("payments row: {e}")))?;
            if self.owns(&payment.user_id) {
                payments.insert(payment.id.clone(), payment);
            }
        }
        let ids: Vec<String> = payments.keys().cloned().collect();
        for chunk in ids.chunks(sql::IDS_PER_STATEMENT) {
            let select = format!("SELECT {} FROM payment_items WHERE payment_id IN ({})", ITEM_COLUMNS.join(", "), sql::list(chunk.len()));
            let rows: Vec<mysql_async::Row> = conn.exec(select, chunk.to_vec()).await.map_err(unavailable)?;
            for row in rows {
                let item = ItemRow::of_values(values_of(row)).map_err(|e| TargetError::Unavailable(format!("payment_items row: {e}")))?;
                if let Some(payment) = payments.get_mut(&item.payment_id) {
                    payment.items.push(item);
                }
            }
        }
        Ok(payments
            .into_values()
            .map(|mut p| {
                p.items.sort_by(|a, b| a.id.cmp(&b.id));
                (format!("payment:{}", p.id), p.canonical())
            })
            .collect())
    }
}

impl Target for MariadbTarget {
    async fn cursor(&mut self) -> Result<Option<u64>, TargetError> {
        timed(async {
            let mut conn = self.pool.get_conn().await.map_err(unavailable)?;
            let row: Option<mysql_async::Row> =
                conn.exec_first("SELECT next_lsn FROM kassa_cursors WHERE shard = ?", (self.shard_value(),)).await.map_err(unavailable)?;
            row.map(|row| Columns::new(values_of(row), &["next_lsn"]).and_then(|mut c| c.uint()))
                .transpose()
                .map_err(|e| TargetError::Unavailable(format!("kassa_cursors: {e}")))
        })
        .await
    }

    async fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        // Only payments are mirrored here. A bookkeeping record still carries the payment's whole state,
        // so it is written like any other (it is only not an event for Kafka).
        let payments = records.iter().filter_map(|r| match &r.event {
            Event::PaymentPut { payment, .. } => Some((r.lsn, payment)),
            _ => None,
        });
        let mut batch = Vec::new();
        for (lsn, candidate) in self.candidates(payments) {
            batch.push(candidate.map_err(|reason| TargetError::Rejected { lsn, reason })?);
        }
        let batch: Vec<&Candidate> = batch.iter().collect();
        timed(self.write_or_reject(&batch, Some(next_lsn))).await
    }

    async fn load(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        let payments = entities.iter().filter_map(|e| match e {
            Entity::Payment(p) => Some((p.version, p)),
            _ => None,
        });
        let mut batch = Vec::new();
        for (version, candidate) in self.candidates(payments) {
            match candidate {
                Ok(c) => batch.push(c),
                // A snapshot has no record to dead-letter: the payment is left out (and `verify` shows it).
                Err(reason) => tracing::error!(shard = self.shard, version, %reason, "payment left out of the MariaDB bootstrap"),
            }
        }
        let mut batch: Vec<&Candidate> = batch.iter().collect();
        timed(async {
            loop {
                match self.write(&batch, None, true).await {
                    Ok(()) => return Ok(()),
                    Err(WriteError::Failed(e)) => return Err(e),
                    Err(WriteError::Refused(reason)) => {
                        let Some((at, why)) = self.culprit(&batch).await? else {
                            return Err(TargetError::Unavailable(format!(
                                "MariaDB refused the chunk ({reason}) but none of its rows alone"
                            )));
                        };
                        tracing::error!(
                            shard = self.shard,
                            id = batch[at].row.id,
                            reason = why,
                            "payment refused by MariaDB; left out of the bootstrap"
                        );
                        batch.remove(at);
                    }
                }
            }
        })
        .await
    }

    async fn finish_load(&mut self, snapshot_lsn: u64, present: &HashSet<String>) -> Result<(), TargetError> {
        timed(async {
            match self.finish(snapshot_lsn, present).await {
                Ok(()) => Ok(()),
                Err(WriteError::Failed(e)) => Err(e),
                Err(WriteError::Refused(reason)) => {
                    Err(TargetError::Unavailable(format!("MariaDB refused the end of the bootstrap: {reason}")))
                }
            }
        })
        .await
    }

    async fn read_back(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        timed(self.read_all()).await
    }

    fn render(&self, entity: &Entity) -> Vec<(String, String)> {
        let Entity::Payment(p) = entity else { return Vec::new() };
        let text = match PaymentRow::of(p, self.currency) {
            Ok(row) => row.canonical(),
            Err(reason) => format!("not representable in MariaDB: {reason}"),
        };
        vec![(format!("payment:{}", p.id), text)]
    }
}
