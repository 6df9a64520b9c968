//! One shard writer's transactional producer, and one transaction with it. Blocking (librdkafka's
//! transaction calls block): call from a blocking thread.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;

use super::cursor::{CURSOR_TOPIC, Cursor};
use super::events::OutEvent;
use super::partition::partition_of;
use super::topics;

/// Its own thread serves the delivery reports (see [`Writer::flush`]).
pub type KafkaProducer = ThreadedProducer<DefaultProducerContext>;

/// A transaction left open by a crashed writer holds back the LSO of every partition it touched (other
/// shards' cursors among them) until the broker aborts it after this long.
const TRANSACTION_TIMEOUT_MS: &str = "30000";
const FLUSH_POLL: Duration = Duration::from_millis(1);
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer with its transactions initialised, and the partition counts of the target's topics.
pub struct Writer {
    pub producer: KafkaProducer,
    pub partitions: HashMap<&'static str, i32>,
}

/// Creates the producer for `transactional_id` and initialises its transactions, which fences any older
/// producer with the same id and settles the transaction it may have left: committed if its commit had
/// begun, aborted otherwise.
pub fn open(brokers: &str, transactional_id: &str) -> Result<Writer, String> {
    let producer: KafkaProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "snappy")
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
        .create()
        .map_err(|e| format!("kafka producer: {e}"))?;
    producer.init_transactions(INIT_TIMEOUT).map_err(|e| format!("kafka init transactions of {transactional_id}: {e}"))?;
    let partitions = topics::partition_counts(producer.client())?;
    Ok(Writer { producer, partitions })
}

/// How a failed transaction left the producer.
pub enum Failure {
    /// Aborted: nothing of it is visible to read-committed consumers; the producer can go on.
    Aborted(String),
    /// The producer is fenced, fatally failed, or the transaction could not be aborted (its fate is
    /// settled by the next producer's `init_transactions`): drop it and open a new one.
    Broken(String),
}

impl Writer {
    /// Publishes `events` and, if given, the cursor message `key → cursor` in one transaction.
    pub fn publish(&self, events: &[OutEvent], cursor: Option<(&str, &Cursor)>) -> Result<(), Failure> {
        match self.try_publish(events, cursor) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.abort(e)),
        }
    }

    fn try_publish(&self, events: &[OutEvent], cursor: Option<(&str, &Cursor)>) -> Result<(), KafkaError> {
        self.producer.begin_transaction()?;
        for event in events {
            let headers = event
                .headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(event.headers.len()), |h, (k, v)| h.insert(Header { key: k, value: Some(v) }));
            let record = BaseRecord::to(event.topic)
                .key(&event.key)
                .payload(&event.body)
                .partition(self.partition(event.topic, event.key.as_bytes()))
                .headers(headers);
            self.producer.send(record).map_err(|(e, _)| e)?;
        }
        if let Some((key, cursor)) = cursor {
            let value = cursor.encode();
            let record = BaseRecord::to(CURSOR_TOPIC).key(key).payload(&value).partition(self.partition(CURSOR_TOPIC, key.as_bytes()));
            self.producer.send(record).map_err(|(e, _)| e)?;
        }
        self.flush();
        // Flushes what is left (nothing); a message that failed for good fails the commit.
        self.producer.commit_transaction(Timeout::Never)
    }

    /// Waits until every message sent is delivered or has failed (the producer's thread serves the reports).
    /// rdkafka's own flush polls in 100 ms slices that each run to their end (and a shorter slice spins), so
    /// with it every transaction took at least 100 ms. Bounded: librdkafka fails a message it cannot deliver
    /// within the transaction timeout.
    fn flush(&self) {
        while self.producer.in_flight_count() > 0 {
            std::thread::sleep(FLUSH_POLL);
        }
    }

    fn partition(&self, topic: &str, key: &[u8]) -> i32 {
        // Counts come from the metadata of every topic written (topics::all), so the default never applies.
        partition_of(key, self.partitions.get(topic).copied().unwrap_or(1))
    }

    fn abort(&self, error: KafkaError) -> Failure {
        let fatal = matches!(&error, KafkaError::Transaction(e) if e.is_fatal());
        if fatal {
            return Failure::Broken(format!("kafka transaction: {error}"));
        }
        match self.producer.abort_transaction(ABORT_TIMEOUT) {
            Ok(()) => Failure::Aborted(format!("kafka transaction aborted: {error}")),
            Err(abort) => Failure::Broken(format!("kafka transaction: {error}; abort: {abort}")),
        }
    }
}
