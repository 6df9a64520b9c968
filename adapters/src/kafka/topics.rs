//! The topics the Kafka target writes: created if missing (idempotently), and their partition counts,
//! which the old partitioner needs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;

use super::cursor::CURSOR_TOPIC;
use super::events::EVENT_TOPICS;
use crate::config::KafkaConfig;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freshly created topic may take to have a leader for every partition.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Topic-level settings of a topic the adapter creates.
fn settings_of(topic: &str) -> &'static [(&'static str, &'static str)] {
    if topic == CURSOR_TOPIC {
        // Only the latest cursor per writer matters.
        &[("cleanup.policy", "compact")]
    } else {
        // The old estate relied on the broker's defaults (auto-creation).
        &[]
    }
}

/// Every topic the target writes, event topics first.
pub fn all() -> [&'static str; 4] {
    let [a, b, c] = EVENT_TOPICS;
    [a, b, c, CURSOR_TOPIC]
}

/// The layout as text, for operators who create the topics themselves.
pub fn describe(cfg: &KafkaConfig) -> String {
    let mut out = String::new();
    for topic in all() {
        let settings: Vec<String> = settings_of(topic).iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "topic {topic} partitions={} replication={}{}{}\n",
            cfg.partitions,
            cfg.replication,
            if settings.is_empty() { "" } else { " " },
            settings.join(" ")
        ));
    }
    out
}

/// Creates the missing topics; existing ones are left as they are (their partition counts are used).
pub async fn ensure(cfg: &KafkaConfig) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &cfg.brokers).create().map_err(|e| format!("kafka admin client: {e}"))?;
    let topics: Vec<NewTopic<'_>> = all()
        .into_iter()
        .map(|topic| {
            settings_of(topic)
                .iter()
                .fold(NewTopic::new(topic, cfg.partitions, TopicReplication::Fixed(cfg.replication)), |t, (k, v)| t.set(k, v))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin.create_topics(&topics, &options).await.map_err(|e| format!("kafka create topics: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("kafka create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// The partition count of each of the target's topics, once every partition has a leader. Blocking.
pub fn partition_counts<C: ClientContext>(client: &Client<C>) -> Result<HashMap<&'static str, i32>, String> {
    let started = Instant::now();
    loop {
        match ready_counts(client) {
            Ok(counts) => return Ok(counts),
            Err(e) if started.elapsed() > READY_TIMEOUT => return Err(e),
            // A topic just created has no leaders for a moment.
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn ready_counts<C: ClientContext>(client: &Client<C>) -> Result<HashMap<&'static str, i32>, String> {
    let mut counts = HashMap::new();
    for topic in all() {
        let metadata = client.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|e| format!("kafka metadata of {topic}: {e}"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("kafka topic {topic} is missing"))?;
        if let Some(err) = found.error() {
            return Err(format!("kafka topic {topic}: {err:?}"));
        }
        let partitions = found.partitions();
        if partitions.is_empty() || partitions.iter().any(|p| p.leader() < 0 || p.error().is_some()) {
            return Err(format!("kafka topic {topic} is not ready"));
        }
        counts.insert(topic, i32::try_from(partitions.len()).map_err(|_| format!("kafka topic {topic}: too many partitions"))?);
    }
    Ok(counts)
}
