//! The DDL of the PostgreSQL target: the old tables exactly as GORM created them (seed contract §2.5 and
//! §5.3), plus two side tables of Kassa's own. The same statements are printed for operators and applied
//! at connect, so what an operator runs by hand is what the adapter would have run.
//!
//! Every statement is idempotent (`IF NOT EXISTS`): an existing table of the old estate is left as it is,
//! rows included. The old tables keep exactly their old columns, because old readers may `SELECT *`;
//! versions and cursors live beside them in `kassa_versions` and `kassa_cursors`.

/// `products` of the catalog database: GORM's auto-migration of the old product entity (`bigserial` id
/// with the primary key `products_pkey`, `decimal` price, everything else nullable, no other index).
pub const PRODUCTS: &[&str] = &["CREATE TABLE IF NOT EXISTS products (
    id bigserial,
    name text,
    description text,
    price numeric,
    stock bigint,
    category text,
    created_at timestamptz,
    updated_at timestamptz,
    CONSTRAINT products_pkey PRIMARY KEY (id)
)"];

/// `notifications` of the notifications database, with GORM's index names.
pub const NOTIFICATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS notifications (
    id text,
    user_id text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    \"type\" text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    priority text NOT NULL DEFAULT 'normal',
    channel text NOT NULL,
    template_id text,
    data json,
    created_at timestamptz,
    updated_at timestamptz,
    sent_at timestamptz,
    read_at timestamptz,
    expires_at timestamptz,
    CONSTRAINT notifications_pkey PRIMARY KEY (id)
)",
    "CREATE INDEX IF NOT EXISTS idx_notifications_user_id ON notifications (user_id)",
    "CREATE INDEX IF NOT EXISTS idx_notifications_template_id ON notifications (template_id)",
];

/// Kassa's side tables, in every database the target writes. `kassa_versions` holds the version of the
/// last change applied to each row (and, with `deleted`, the tombstone of a deleted one), so a replayed
/// older record changes nothing; `kassa_cursors` holds each shard's next LSN, committed with the rows.
pub const SIDE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kassa_versions (
    entity text NOT NULL,
    id text NOT NULL,
    version bigint NOT NULL,
    deleted boolean NOT NULL,
    PRIMARY KEY (entity, id)
)",
    "CREATE TABLE IF NOT EXISTS kassa_cursors (
    shard integer PRIMARY KEY,
    next_lsn bigint NOT NULL
)",
];

/// The statements for the catalog database; `with_notifications` when the notifications share it.
pub fn catalog(with_notifications: bool) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = PRODUCTS.to_vec();
    if with_notifications {
        all.extend_from_slice(NOTIFICATIONS);
    }
    all.extend_from_slice(SIDE_TABLES);
    all
}

/// The statements for a notifications database of its own.
pub fn notifications() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = NOTIFICATIONS.to_vec();
    all.extend_from_slice(SIDE_TABLES);
    all
}

/// The DDL as an operator runs it: one block per database.
pub fn printable(separate: bool) -> String {
    let block = |title: &str, statements: &[&str]| -> String {
        let mut out = format!("-- {title}\n");
        for s in statements {
            out.push_str(s);
            out.push_str(";\n");
        }
        out
    };
    if separate {
        format!(
            "{}\n{}",
            block("Catalog database ([adapters.postgres] url)", &catalog(false)),
            block("Notifications database ([adapters.postgres] notifications_url)", &notifications())
        )
    } else {
        block("Catalog and notifications database ([adapters.postgres] url)", &catalog(true))
    }
}
