//! Creating the topics (used by `driftwatch-collector topics` and the local
//! services script). Plain Kafka admin protocol: works on any broker.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// What [`ensure`] did.
#[derive(Debug)]
pub struct Ready {
    /// The topics created now (the others existed).
    pub created: Vec<String>,
    /// The replication factor they were created with.
    pub replication: i32,
    /// The brokers the cluster has.
    pub brokers: usize,
}

/// The replication factor for a cluster of `brokers` when none is given:
/// 3 (a broker can be lost and acks=all still written with
/// min.insync.replicas 2), or all of them on a smaller cluster.
pub fn default_replication(brokers: usize) -> i32 {
    brokers.clamp(1, 3) as i32
}

/// Creates each topic that does not exist yet, connecting with
/// `properties` (`kafka.properties`: SASL, TLS) as every client does, with
/// `replication` or else [`default_replication`] of the cluster's brokers.
pub async fn ensure(
    brokers: &str,
    properties: &std::collections::BTreeMap<String, String>,
    topics: &[&str],
    partitions: i32,
    replication: Option<i32>,
) -> anyhow::Result<Ready> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        config.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| anyhow::anyhow!("Kafka admin client for {brokers}: {e}"))?;
    // The broker count, from a metadata request (blocking in librdkafka:
    // on a thread of its own, by a client of the same settings).
    let probe = config.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        let client: rdkafka::consumer::BaseConsumer = probe.create()?;
        client.fetch_metadata(None, Duration::from_secs(30)).map(|m| m.brokers().len())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("reading the cluster's metadata from {brokers}: {e}"))?;
    let replication = replication.unwrap_or_else(|| default_replication(cluster));
    anyhow::ensure!(
        replication >= 1 && replication as usize <= cluster.max(1),
        "replication factor {replication}: the cluster at {brokers} has {cluster} broker(s)"
    );
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
    Ok(Ready { created, replication, brokers: cluster })
}

#[cfg(test)]
mod tests {
    /// The admin client takes `kafka.properties` like every other client
    /// (it once connected with the brokers alone, so SASL brokers refused it).
    #[tokio::test]
    async fn the_admin_client_takes_the_kafka_properties() {
        let properties = [("no.such.property".to_string(), "x".to_string())].into();
        let e = super::ensure("127.0.0.1:1", &properties, &["t"], 1, Some(1)).await.unwrap_err().to_string();
        assert!(e.contains("no.such.property"), "{e}");
    }

    #[test]
    fn three_replicas_where_the_cluster_has_them() {
        assert_eq!([0, 1, 2, 3, 9].map(super::default_replication), [1, 1, 2, 3, 3]);
    }
}
