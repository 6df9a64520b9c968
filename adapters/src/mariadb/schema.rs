//! The DDL of the MariaDB mirror: the old `payment_service` tables exactly as GORM created them
//! (seed-contract §4.7), and the adapter's own version and cursor tables beside them.

/// `payments` and `payment_items` as the old service's auto-migration made them: the same columns, types,
/// nullability, defaults and index names. `json` is MariaDB's alias of `longtext` with a `json_valid`
/// check. Created only if missing, so an existing old database is used as it is.
pub(super) const OLD_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS payments (
    id varchar(191) NOT NULL,
    user_id varchar(191) NOT NULL,
    basket_id varchar(191) NOT NULL,
    amount double NOT NULL,
    currency varchar(191) NOT NULL DEFAULT 'USD',
    status varchar(191) NOT NULL DEFAULT 'pending',
    method longtext NOT NULL,
    provider longtext NOT NULL,
    provider_id varchar(191) NULL,
    description longtext NULL,
    metadata json NULL,
    created_at datetime(3) NULL,
    updated_at datetime(3) NULL,
    processed_at datetime(3) NULL,
    expires_at datetime(3) NULL,
    PRIMARY KEY (id),
    KEY idx_payments_user_id (user_id),
    KEY idx_payments_basket_id (basket_id),
    KEY idx_payments_provider_id (provider_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS payment_items (
    id varchar(191) NOT NULL,
    payment_id varchar(191) NOT NULL,
    product_id bigint NOT NULL,
    name longtext NOT NULL,
    quantity bigint NOT NULL,
    price double NOT NULL,
    subtotal double NOT NULL,
    category longtext NULL,
    created_at datetime(3) NULL,
    PRIMARY KEY (id),
    KEY idx_payment_items_payment_id (payment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

/// The adapter's own tables, which the old consumers never read. `kassa_versions` guards every write by
/// the entity's version and keeps tombstones (`deleted`) of rows removed, so a replayed older record
/// cannot bring them back; `kassa_cursors` is each shard's next LSN, committed with the data.
pub(super) const OWN_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS kassa_versions (
    entity varchar(32) NOT NULL,
    id varchar(191) NOT NULL,
    shard int NOT NULL,
    version bigint unsigned NOT NULL,
    deleted bool NOT NULL,
    PRIMARY KEY (entity, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS kassa_cursors (
    shard int NOT NULL,
    next_lsn bigint unsigned NOT NULL,
    PRIMARY KEY (shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

/// Every statement, in the order the adapter runs them.
pub(super) fn statements() -> impl Iterator<Item = &'static str> {
    OLD_TABLES.into_iter().chain(OWN_TABLES)
}

/// The DDL as one script, for operators who run it themselves.
pub(super) fn script() -> String {
    let mut out = String::from("-- Kassa's MariaDB mirror (the old payment_service database).\n");
    for statement in statements() {
        out.push_str(statement);
        out.push_str(";\n\n");
    }
    out
}
