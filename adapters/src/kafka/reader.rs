//! Reads partitions to their end as a read-committed consumer sees them, for the cursor and `verify`.
//!
//! "The end" is the high watermark when the read starts, which may lie beyond the last stable offset
//! while some transaction (another shard's, say) is still open on the partition. Stopping at the LSO
//! would miss committed messages behind that transaction, so the reader waits until its position has
//! passed the high watermark it started from: every message below it is then decided, and the committed
//! ones have all been seen. Blocking: call from a blocking thread.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;

/// A read gives up when it has not moved for this long (an open transaction holds the LSO back until it
/// is committed, aborted, or times out on the broker).
const STALL: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition to read, from the earliest offset still there.
#[derive(Clone, Debug)]
pub struct Part {
    pub topic: String,
    pub partition: i32,
}

fn consumer(brokers: &str, isolation: &str) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Only assigned partitions, never a group join or an offset commit; librdkafka wants an id anyway.
        .set("group.id", "kassa-adapter-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))
}

/// Partitions per topic of the adapter's topics, as a plain consumer sees them.
pub fn partition_counts(brokers: &str) -> Result<std::collections::HashMap<&'static str, i32>, String> {
    let consumer = consumer(brokers, "read_committed")?;
    super::topics::partition_counts(consumer.client())
}

/// Calls `each` for every committed message of `parts`, partition by partition in offset order, up to the
/// high watermarks at the start of the call.
pub fn read_committed(brokers: &str, parts: &[Part], mut each: impl FnMut(&BorrowedMessage<'_>)) -> Result<(), String> {
    // The high watermark (all messages written, decided or not) needs a read-uncommitted client: a
    // read-committed one's watermark query answers with the LSO.
    let uncommitted = consumer(brokers, "read_uncommitted")?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for part in parts {
        let (low, high) = uncommitted
            .fetch_watermarks(&part.topic, part.partition, WATERMARK_TIMEOUT)
            .map_err(|e| format!("watermarks of {}[{}]: {e}", part.topic, part.partition))?;
        if high > low {
            assignment
                .add_partition_offset(&part.topic, part.partition, Offset::Offset(low))
                .map_err(|e| format!("assign {}[{}]: {e}", part.topic, part.partition))?;
            ends.push((part, high));
        }
    }
    drop(uncommitted);
    if ends.is_empty() {
        return Ok(());
    }
    let committed = consumer(brokers, "read_committed")?;
    committed.assign(&assignment).map_err(|e| format!("kafka assign: {e}"))?;
    let mut last_move = Instant::now();
    let mut reached = vec![false; ends.len()];
    loop {
        match committed.poll(POLL) {
            Some(Ok(message)) => {
                each(&message);
                last_move = Instant::now();
            }
            Some(Err(e)) => return Err(format!("kafka read: {e}")),
            None => {}
        }
        // The position counts the transaction markers too, so it reaches the high watermark even when
        // the last messages were markers or aborted ones.
        let position = committed.position().map_err(|e| format!("kafka position: {e}"))?;
        for (i, (part, high)) in ends.iter().enumerate() {
            let at = position.find_partition(&part.topic, part.partition).map(|e| e.offset());
            if let Some(Offset::Offset(at)) = at
                && at >= *high
                && !reached[i]
            {
                reached[i] = true;
                last_move = Instant::now();
            }
        }
        if reached.iter().all(|r| *r) {
            return Ok(());
        }
        if last_move.elapsed() > STALL {
            let behind: Vec<String> = ends
                .iter()
                .zip(&reached)
                .filter(|(_, r)| !**r)
                .map(|((part, high), _)| format!("{}[{}] (end {high})", part.topic, part.partition))
                .collect();
            return Err(format!("kafka read stalled for {}s before the end of {}", STALL.as_secs(), behind.join(", ")));
        }
    }
}
