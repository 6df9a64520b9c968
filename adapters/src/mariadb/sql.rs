//! Multi-row statements: one statement writes many rows (a batch costs a few round trips, not one per
//! record), with `?` placeholders for every value.

/// Rows per multi-row statement: 256 × 15 columns stays far below the 65 535 placeholders a prepared
/// statement may have, and a batch of the default size takes two statements per table.
pub(super) const ROWS_PER_STATEMENT: usize = 256;

/// Ids per `IN (…)` list.
pub(super) const IDS_PER_STATEMENT: usize = 1000;

/// `?, ?, …` with `n` placeholders.
pub(super) fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `tuple, tuple, …` with `n` copies of `tuple` (e.g. `(?, ?)`).
pub(super) fn rows(n: usize, tuple: &str) -> String {
    vec![tuple; n].join(", ")
}

/// `INSERT INTO table (columns) VALUES (…), …` for `n` rows.
pub(super) fn insert(table: &str, columns: &[&str], n: usize) -> String {
    format!("INSERT INTO {table} ({}) VALUES {}", columns.join(", "), rows(n, &format!("({})", list(columns.len()))))
}

/// Like [`insert`], updating `update` from the new row where the key exists.
pub(super) fn upsert(table: &str, columns: &[&str], n: usize, update: &[&str]) -> String {
    let set: Vec<String> = update.iter().map(|c| format!("{c} = VALUES({c})")).collect();
    format!("{} ON DUPLICATE KEY UPDATE {}", insert(table, columns, n), set.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(list(3), "?, ?, ?");
        assert_eq!(insert("t", &["a", "b"], 2), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
        assert_eq!(upsert("t", &["a", "b"], 1, &["b"]), "INSERT INTO t (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE b = VALUES(b)");
    }
}
