//! The engine's figures for metrics and tests: one plain snapshot per shard, read from the shards'
//! atomics, so that callers never hold the engine's internals.

use std::sync::atomic::Ordering;

use crate::shard::ShardStats;

/// What one shard has done since start-up (counters) and where it stands (gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardFigures {
    pub running: bool,
    pub commands_total: u64,
    /// Group commits (journal syncs) done.
    pub batches_total: u64,
    pub events_total: u64,
    /// Largest group commit, in events.
    pub batch_events_max: u64,
    pub sync_micros_total: u64,
    pub sync_micros_last: u64,
    /// Mail waiting in the shard's mailbox.
    pub queue_depth: u64,
    pub durable_lsn: u64,
    pub checkpoint_lsn: u64,
    pub checkpoint_at_micros: u64,
    /// Client commands refused with `overloaded`.
    pub overloaded_total: u64,
    /// Peer messages dropped on a full mailbox (and re-driven).
    pub peer_dropped_total: u64,
    /// Store writes applied in memory and not yet moved into the stores by the projector.
    pub store_buffered_entries: u64,
}

/// A snapshot of every shard's figures, in shard order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub shards: Vec<ShardFigures>,
}

impl EngineStats {
    pub(crate) fn read(stats: &[std::sync::Arc<ShardStats>]) -> EngineStats {
        EngineStats { shards: stats.iter().map(|s| ShardFigures::read(s)).collect() }
    }

    pub fn overloaded_total(&self) -> u64 {
        self.shards.iter().map(|s| s.overloaded_total).sum()
    }
}

impl ShardFigures {
    fn read(s: &ShardStats) -> ShardFigures {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ShardFigures {
            running: s.running.load(Ordering::Acquire),
            commands_total: get(&s.commands_total),
            batches_total: get(&s.batches_total),
            events_total: get(&s.events_total),
            batch_events_max: get(&s.batch_events_max),
            sync_micros_total: get(&s.sync_micros_total),
            sync_micros_last: get(&s.sync_micros_last),
            queue_depth: get(&s.queue_depth),
            durable_lsn: get(&s.durable_lsn),
            checkpoint_lsn: get(&s.checkpoint_lsn),
            checkpoint_at_micros: get(&s.checkpoint_at_micros),
            overloaded_total: get(&s.overloaded_total),
            peer_dropped_total: get(&s.peer_dropped_total),
            store_buffered_entries: 0,
        }
    }
}
