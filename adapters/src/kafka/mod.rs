//! Kafka: the old payment service's events on `payment-events`, `stock-events` and `basket-events`
//! (seed contract §6), published by one transactional producer per shard (`<transactional_id>-<shard>`,
//! `acks=all`, idempotent, snappy), each message on the partition the old Sarama producer would have
//! picked ([`partition_of`]).
//!
//! **Cursor.** Each writer's cursor is a message keyed `<transactional_id>-<shard>` in the compacted topic
//! `kassa-cursors`, produced in the same transaction as the events of the batch, so a read-committed
//! consumer sees the events and the cursor move together or not at all. [`Target::cursor`] reads the
//! latest committed value for the key, up to the partition's high watermark; a tombstone (null or empty
//! value) for the key resets the writer to "never written".
//!
//! **Exactly once for read-committed consumers.** A failed batch is aborted (or, if the abort fails or
//! the producer is fenced, the producer is dropped and the next one's `init_transactions` settles the
//! transaction: committed if its commit had reached the coordinator, aborted otherwise) and the runner
//! retries it. After any failure whose outcome the target cannot know, it reads its cursor back from
//! Kafka before writing again; the cursor carries `published_below`, the LSN below which every record
//! has been published, and records below it are skipped. So if an ambiguous commit did go through, the
//! retry finds the moved cursor and publishes nothing again; if it did not, its events were never
//! visible to read-committed consumers and the retry publishes them once. The same mark makes a cursor
//! moved back (a rewind) republish nothing. Read-uncommitted consumers — Sarama's default, so the old
//! notification service unless it is configured with `IsolationLevel = ReadCommitted` — can see the
//! events of an aborted attempt and then the retry's: the retry's events carry the same `event_id`
//! ([`event_id`]) and the same body, so such a consumer can recognise them.
//!
//! **Bootstrap.** Kafka holds history, not state: [`Target::load`] publishes nothing unless
//! `KafkaConfig::snapshot` is on; then it publishes, for each payment of the snapshot changed since the
//! writer last published (all of them for a new writer), the events its current state implies
//! ([`events_of_state`]: a completion with its stock and basket events, a refund, a failure;
//! earlier failed attempts left no trace and are not made up), with event ids of their own. Consumers
//! see those events again when a writer is re-bootstrapped: that is the opt-in. Publication during a
//! bootstrap is at least once (a bootstrap interrupted before [`Target::finish_load`] starts over), and
//! `finish_load` only moves the cursor: an event log has nothing to remove.

mod cursor;
mod events;
mod partition;
mod producer;
mod reader;
mod topics;
mod verify;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kassa_engine::FeedRecord;
use kassa_engine::placement::shard_of_user;
use rdkafka::message::Message;

pub use cursor::{CURSOR_TOPIC, Cursor};
pub use events::{
    BASKET_EVENTS, EVENT_TOPICS, HEADER_INDEX, HEADER_LSN, HEADER_PRODUCER, HEADER_SHARD, Origin, OutEvent, PAYMENT_EVENTS, STOCK_EVENTS,
    event_id, event_origin, events_of, events_of_state,
};
pub use partition::{fnv1a32, partition_of};

use crate::config::KafkaConfig;
use crate::{Connect, Entity, Target, TargetError};
use producer::{Failure, Writer};
use reader::Part;

/// Opens one [`KafkaTarget`] per shard.
pub struct KafkaConnect {
    cfg: Arc<KafkaConfig>,
}

impl KafkaConnect {
    pub fn new(cfg: KafkaConfig) -> Self {
        KafkaConnect { cfg: Arc::new(cfg) }
    }
}

impl Connect for KafkaConnect {
    type Target = KafkaTarget;

    fn name(&self) -> &'static str {
        "kafka"
    }

    fn schema(&self) -> String {
        let prefix = &self.cfg.transactional_id;
        format!(
            "{}\
             # payment-events: key = payment id; headers event_type, payment_id, user_id; payment.completed, payment.failed, payment.refunded\n\
             # stock-events: key = product id (decimal); headers event_type, product_id; stock.updated\n\
             # basket-events: key = user id; headers event_type, user_id, basket_id; basket.cleared\n\
             # then headers {HEADER_PRODUCER}, {HEADER_SHARD}, {HEADER_LSN}, {HEADER_INDEX}\n\
             # partition = |int32(fnv1a32(key)) % partitions| (Sarama's default hash partitioner)\n\
             # {CURSOR_TOPIC}: key = {prefix}-<shard>, value = {{\"next_lsn\":…,\"published_below\":…,\"since\":…}}\n\
             # producers: transactional.id = {prefix}-<shard>, acks=all, enable.idempotence=true, compression.type=snappy\n",
            topics::describe(&self.cfg)
        )
    }

    async fn connect(&self, shard: usize, shards: usize) -> Result<KafkaTarget, TargetError> {
        topics::ensure(&self.cfg).await.map_err(TargetError::Unavailable)?;
        let mut target = KafkaTarget::new(&self.cfg, shard, shards, false);
        target.writer().await?;
        Ok(target)
    }

    /// A target that only reads (cursor, topics): it opens no transactional producer, which would fence
    /// the running writer of the same transactional id.
    async fn connect_reader(&self, shard: usize, shards: usize) -> Result<KafkaTarget, TargetError> {
        Ok(KafkaTarget::new(&self.cfg, shard, shards, true))
    }
}

/// What the target knows of its committed cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// After a failure whose outcome is not known: read it back before writing.
    Unknown,
    /// Never written.
    Absent,
    At(Cursor),
}

/// One shard's writer into Kafka.
pub struct KafkaTarget {
    cfg: Arc<KafkaConfig>,
    shard: usize,
    shards: usize,
    /// `<prefix>-<shard>`: the producer's transactional id, the cursor's key and the `kassa_producer` header.
    transactional_id: String,
    writer: Option<Arc<Writer>>,
    state: State,
    /// A reader for `verify`: never opens the producer; partition counts come from a plain consumer.
    reader_only: bool,
    partitions: Option<HashMap<&'static str, i32>>,
}

/// Runs blocking librdkafka calls away from the async runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TargetError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| TargetError::Unavailable(format!("kafka worker: {e}")))
}

impl KafkaTarget {
    fn new(cfg: &Arc<KafkaConfig>, shard: usize, shards: usize, reader_only: bool) -> KafkaTarget {
        KafkaTarget {
            cfg: Arc::clone(cfg),
            shard,
            shards,
            transactional_id: format!("{}-{shard}", cfg.transactional_id),
            writer: None,
            state: State::Unknown,
            reader_only,
            partitions: None,
        }
    }

    /// Partitions per topic: the producer's view, or a consumer's for a reader.
    async fn partitions(&mut self) -> Result<HashMap<&'static str, i32>, TargetError> {
        if !self.reader_only {
            return Ok(self.writer().await?.partitions.clone());
        }
        if let Some(p) = &self.partitions {
            return Ok(p.clone());
        }
        let brokers = self.cfg.brokers.clone();
        let counts = blocking(move || reader::partition_counts(&brokers)).await?.map_err(TargetError::Unavailable)?;
        self.partitions = Some(counts.clone());
        Ok(counts)
    }

    /// The producer, opened (again) if there is none.
    async fn writer(&mut self) -> Result<Arc<Writer>, TargetError> {
        if let Some(writer) = &self.writer {
            return Ok(Arc::clone(writer));
        }
        let (brokers, id) = (self.cfg.brokers.clone(), self.transactional_id.clone());
        let writer = Arc::new(blocking(move || producer::open(&brokers, &id)).await?.map_err(TargetError::Unavailable)?);
        self.writer = Some(Arc::clone(&writer));
        Ok(writer)
    }

    /// Forgets a broken producer (destroying it may block: not on the runtime).
    fn drop_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            drop(tokio::task::spawn_blocking(move || drop(writer)));
        }
    }

    /// Reads the committed cursor from `kassa-cursors`.
    async fn read_state(&mut self) -> Result<State, TargetError> {
        let partitions = self.partitions().await?;
        let key = self.transactional_id.clone();
        let part = Part {
            topic: CURSOR_TOPIC.to_string(),
            partition: partition_of(key.as_bytes(), partitions.get(CURSOR_TOPIC).copied().unwrap_or(1)),
        };
        let brokers = self.cfg.brokers.clone();
        let latest = blocking(move || {
            let mut latest: Option<Option<Vec<u8>>> = None;
            reader::read_committed(&brokers, &[part], |m| {
                if m.key() == Some(key.as_bytes()) {
                    latest = Some(m.payload().filter(|p| !p.is_empty()).map(<[u8]>::to_vec));
                }
            })
            .map(|()| latest)
        })
        .await?
        .map_err(TargetError::Unavailable)?;
        let state = match latest.flatten() {
            None => State::Absent,
            Some(bytes) => State::At(Cursor::decode(&bytes).map_err(TargetError::Unavailable)?),
        };
        self.state = state;
        Ok(state)
    }

    async fn known_state(&mut self) -> Result<State, TargetError> {
        match self.state {
            State::Unknown => self.read_state().await,
            known => Ok(known),
        }
    }

    /// Publishes `events` and, if given, the new cursor in one transaction.
    async fn publish(&mut self, events: Vec<OutEvent>, cursor: Option<Cursor>) -> Result<(), TargetError> {
        let writer = self.writer().await?;
        let key = self.transactional_id.clone();
        let outcome = blocking(move || writer.publish(&events, cursor.as_ref().map(|c| (key.as_str(), c)))).await?;
        match outcome {
            Ok(()) => {
                if let Some(cursor) = cursor {
                    self.state = State::At(cursor);
                }
                Ok(())
            }
            // Aborted for certain: the committed cursor is still the one known.
            Err(Failure::Aborted(reason)) => Err(TargetError::Unavailable(reason)),
            Err(Failure::Broken(reason)) => {
                self.drop_writer();
                self.state = State::Unknown;
                Err(TargetError::Unavailable(reason))
            }
        }
    }

    fn owns_user(&self, user_id: &str) -> bool {
        self.shards == 0 || shard_of_user(user_id, self.shards as u32) as usize == self.shard
    }
}

impl Target for KafkaTarget {
    async fn cursor(&mut self) -> Result<Option<u64>, TargetError> {
        Ok(match self.read_state().await? {
            State::At(c) => Some(c.next_lsn),
            State::Absent | State::Unknown => None,
        })
    }

    async fn apply(&mut self, records: &[FeedRecord], next_lsn: u64) -> Result<(), TargetError> {
        let current = match self.known_state().await? {
            State::At(c) => c,
            // Written for the first time without a bootstrap: it has followed from here on.
            State::Absent | State::Unknown => {
                let since = records.first().map_or(next_lsn, |r| r.lsn);
                Cursor { next_lsn: since, published_below: since, since }
            }
        };
        let mut events = Vec::new();
        for record in records {
            if record.shard != self.shard {
                return Err(TargetError::Rejected {
                    lsn: record.lsn,
                    reason: format!("record of shard {} given to shard {}", record.shard, self.shard),
                });
            }
            if record.lsn < current.published_below {
                continue;
            }
            events.extend(events_of(record, &self.transactional_id).map_err(|reason| TargetError::Rejected { lsn: record.lsn, reason })?);
        }
        self.publish(events, Some(current.moved_to(next_lsn))).await
    }

    async fn load(&mut self, entities: &[Entity]) -> Result<(), TargetError> {
        if !self.cfg.snapshot {
            return Ok(());
        }
        let published_below = match self.known_state().await? {
            State::At(c) => c.published_below,
            State::Absent | State::Unknown => 0,
        };
        let mut events = Vec::new();
        for entity in entities {
            if let Entity::Payment(p) = entity
                && self.owns_user(&p.user_id)
                && p.version >= published_below
            {
                events.extend(
                    events_of_state(p, self.shard, &self.transactional_id)
                        .map_err(|reason| TargetError::Rejected { lsn: p.version, reason })?,
                );
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        // No cursor: until finish_load the writer has not been bootstrapped.
        self.publish(events, None).await
    }

    async fn finish_load(&mut self, snapshot_lsn: u64, _present: &HashSet<String>) -> Result<(), TargetError> {
        let next_lsn = snapshot_lsn + 1;
        let cursor = match self.known_state().await? {
            State::At(c) => c.moved_to(next_lsn),
            State::Absent | State::Unknown => {
                // With the snapshot published, every payment's history is expected from the start.
                let since = if self.cfg.snapshot { 0 } else { next_lsn };
                Cursor { next_lsn, published_below: next_lsn, since }
            }
        };
        self.publish(Vec::new(), Some(cursor)).await
    }

    async fn read_back(&mut self) -> Result<BTreeMap<String, String>, TargetError> {
        // `since` (for render) as committed now.
        self.read_state().await?;
        let partitions = self.partitions().await?;
        let parts: Vec<Part> = EVENT_TOPICS
            .iter()
            .flat_map(|topic| {
                let count = partitions.get(topic).copied().unwrap_or(1);
                (0..count).map(|partition| Part { topic: (*topic).to_string(), partition })
            })
            .collect();
        let (brokers, producer, shard, shards) = (self.cfg.brokers.clone(), self.transactional_id.clone(), self.shard, self.shards);
        blocking(move || {
            let mut collected = verify::Collected::new(&producer, shard, shards);
            reader::read_committed(&brokers, &parts, |m| collected.add(m)).map(|()| collected.finish())
        })
        .await?
        .map_err(TargetError::Unavailable)
    }

    fn render(&self, entity: &Entity) -> Vec<(String, String)> {
        let Entity::Payment(p) = entity else { return Vec::new() };
        if !self.owns_user(&p.user_id) {
            return Vec::new();
        }
        let since = match self.state {
            State::At(c) => c.since,
            State::Absent | State::Unknown => 0,
        };
        verify::expected(p, since).map(|text| (verify::key_of(&p.id), text)).into_iter().collect()
    }
}
