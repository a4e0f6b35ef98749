//! Creating the topics (used by `driftwatch-collector topics` and the local
//! services script). Plain Kafka admin protocol: works on any broker.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// Creates each topic that does not exist yet, connecting with
/// `properties` (`kafka.properties`: SASL, TLS) as every client does.
/// Returns the ones created.
pub async fn ensure(
    brokers: &str,
    properties: &std::collections::BTreeMap<String, String>,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> anyhow::Result<Vec<String>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        config.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| anyhow::anyhow!("Kafka admin client for {brokers}: {e}"))?;
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

#[cfg(test)]
mod tests {
    /// The admin client takes `kafka.properties` like every other client
    /// (it once connected with the brokers alone, so SASL brokers refused it).
    #[tokio::test]
    async fn the_admin_client_takes_the_kafka_properties() {
        let properties = [("no.such.property".to_string(), "x".to_string())].into();
        let e = super::ensure("127.0.0.1:1", &properties, &["t"], 1, 1).await.unwrap_err().to_string();
        assert!(e.contains("no.such.property"), "{e}");
    }
}
