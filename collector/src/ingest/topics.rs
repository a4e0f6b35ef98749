//! Creating the topics (used by `driftwatch-collector topics` and the local
//! services script). Plain Kafka admin protocol: works on any broker.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// Creates each topic that does not exist yet. Returns the ones created.
pub async fn ensure(brokers: &str, topics: &[&str], partitions: i32, replication: i32) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| anyhow::anyhow!("Kafka admin client for {brokers}: {e}"))?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &opts).await.map_err(|e| anyhow::anyhow!("creating topics on {brokers}: {e}"))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => anyhow::bail!("creating topic {t} on {brokers}: {code}"),
        }
    }
    Ok(created)
}
