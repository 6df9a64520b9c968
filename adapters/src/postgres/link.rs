//! One connection to one database, reopened when it breaks, and how its errors read to the runner: a
//! refusal of a value (retrying cannot help: dead-letter it) or anything else (retry later).

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::TargetError;

/// Temporary tables of the session, for COPY in a bootstrap; emptied by every commit.
const STAGING: &[&str] = &[
    "CREATE TEMP TABLE IF NOT EXISTS kassa_stage_products (
        id bigint, name text, description text, price text, stock bigint, category text,
        created_at timestamptz, updated_at timestamptz, version bigint
    ) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS kassa_stage_notifications (
        id text, user_id text, title text, message text, \"type\" text, status text, priority text,
        channel text, template_id text, data text, created_at timestamptz, updated_at timestamptz,
        sent_at timestamptz, read_at timestamptz, expires_at timestamptz, version bigint
    ) ON COMMIT DELETE ROWS",
];

/// Why a write failed.
#[derive(Debug)]
pub enum Failure {
    /// PostgreSQL refused a value for what it is (a data exception, an integrity violation, a key too
    /// large for its index).
    Content(String),
    /// The connection, the server or the schema: the same write may succeed later.
    Other(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        let text = describe(&e);
        match e.code().map(|c| c.code()) {
            Some(code) if code.starts_with("22") || code.starts_with("23") || code == "54000" => Failure::Content(text),
            _ => Failure::Other(text),
        }
    }
}

impl Failure {
    pub fn unavailable(self) -> TargetError {
        match self {
            Failure::Content(s) | Failure::Other(s) => TargetError::Unavailable(s),
        }
    }
}

/// The server's own words (SQLSTATE, message, detail) where there are any.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

pub fn unavailable(e: tokio_postgres::Error) -> TargetError {
    TargetError::Unavailable(describe(&e))
}

pub struct Link {
    config: Config,
    client: Client,
    /// Set after a failure: the connection may be broken before its task has noticed, so the next use
    /// opens a new one rather than fail again on the old.
    stale: bool,
}

impl Link {
    /// Connects (plain TCP or a Unix socket; no TLS connector is built in) with a bounded connect time
    /// and TCP keepalives, so a vanished server shows as an error instead of a hang.
    pub async fn open(url: &str) -> Result<Link, TargetError> {
        let mut config: Config = url.parse().map_err(|e| TargetError::Unavailable(format!("invalid PostgreSQL url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name("kassa-adapter");
        }
        let client = connect(&config).await?;
        Ok(Link { config, client, stale: false })
    }

    /// The client, reconnected first if the connection was lost or a failure made it suspect (the
    /// runner retries after an error).
    pub async fn client(&mut self) -> Result<&mut Client, TargetError> {
        if self.stale || self.client.is_closed() {
            self.client = connect(&self.config).await?;
            self.stale = false;
        }
        Ok(&mut self.client)
    }

    /// Marks the connection suspect after a failure.
    pub fn reset(&mut self) {
        self.stale = true;
    }

    /// Tells two links apart: the same database reached under two URLs must not hold two transactions
    /// (they would wait on each other's cursor row). A database is its name and oid on one server
    /// start; two servers started in the same microsecond with the same oid for the same name do not
    /// happen.
    pub async fn identity(&mut self) -> Result<String, TargetError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT d.oid::bigint, d.datname::text, pg_postmaster_start_time()::text \
                 FROM pg_database d WHERE d.datname = current_database()",
                &[],
            )
            .await
            .map_err(unavailable)?;
        let oid: i64 = row.get(0);
        let name: String = row.get(1);
        let started: String = row.get(2);
        Ok(format!("{oid}/{name}/{started}"))
    }
}

async fn connect(config: &Config) -> Result<Client, TargetError> {
    let (client, connection) = config.connect(NoTls).await.map_err(unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "postgres adapter connection ended");
        }
    });
    for statement in STAGING {
        client.batch_execute(statement).await.map_err(unavailable)?;
    }
    Ok(client)
}
