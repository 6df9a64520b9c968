//! The Kafka target's cursor: one message per shard writer in the compacted topic `kassa-cursors`,
//! produced in the same Kafka transaction as the events it accounts for, so both are visible to a
//! read-committed reader together or not at all.

use serde::{Deserialize, Serialize};

pub const CURSOR_TOPIC: &str = "kassa-cursors";

/// The value of a cursor message (JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The next LSN the shard's mirror needs (what [`crate::Target::cursor`] returns).
    pub next_lsn: u64,
    /// Every record below this LSN has been published (or had nothing to publish): the version guard.
    /// A Kafka topic cannot be updated in place, so instead of comparing entity versions the target skips
    /// records below this mark; it only grows, so a cursor moved back (a rewind, a replay) republishes
    /// nothing.
    pub published_below: u64,
    /// Every record from this LSN on has been seen by this writer: payments whose last change is older
    /// were never published by it (it started later, without publishing the snapshot), and `verify`
    /// expects no events for them.
    pub since: u64,
}

impl Cursor {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Cursor, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("cursor message {:?}: {e}", String::from_utf8_lossy(bytes)))
    }

    /// The cursor after records below `next_lsn` were applied (or a cursor was set to it).
    pub fn moved_to(self, next_lsn: u64) -> Cursor {
        Cursor { next_lsn, published_below: self.published_below.max(next_lsn), since: self.since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_guard() {
        let c = Cursor { next_lsn: 10, published_below: 12, since: 3 };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        assert_eq!(String::from_utf8(c.encode()).unwrap(), r#"{"next_lsn":10,"published_below":12,"since":3}"#);
        // A rewind keeps the guard; moving past it raises it.
        assert_eq!(c.moved_to(5), Cursor { next_lsn: 5, published_below: 12, since: 3 });
        assert_eq!(c.moved_to(20), Cursor { next_lsn: 20, published_below: 20, since: 3 });
        assert!(Cursor::decode(b"17").is_err());
    }
}
