//! Confluent's wire format (`kafka.wire_format: confluent`): the current
//! schemas are registered at start under each topic's value subject, and
//! records are framed with the ids the registry gives. Records wait (in the
//! sources' queue) while the registry cannot be reached at start, so that
//! a consumer reading only Confluent's framing (Kafka Connect's
//! AvroConverter) never meets another; if the registry refuses the
//! schemas, or the agent stops first, records are single-object encoded,
//! which every collector reads.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_schemas::registry::{subject, Registry};
use driftwatch_schemas::Stream;
use tokio::sync::watch;

use super::config::{KafkaConfig, WireFormat};

/// How records are framed, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// The registry has not answered yet.
    Pending,
    /// Confluent's wire format, with each stream's schema id.
    Confluent(BTreeMap<Stream, u32>),
    SingleObject,
}

/// The framing, as the registering task decides it (see [`channel`]).
#[derive(Clone)]
pub struct SchemaIds(watch::Receiver<Framing>);

impl Default for SchemaIds {
    /// Single-object, decided (no registry).
    fn default() -> Self {
        SchemaIds(watch::channel(Framing::SingleObject).1)
    }
}

impl SchemaIds {
    /// The framing, waiting while it is [`Framing::Pending`]; single-object
    /// if the registering task ended without ids.
    pub async fn decided(&mut self) -> Framing {
        match self.0.wait_for(|f| *f != Framing::Pending).await {
            Ok(f) => f.clone(),
            Err(_) => Framing::SingleObject,
        }
    }
}

/// The framing `cfg` asks for: pending until [`register`] decides it, for
/// `wire_format: confluent`; else single-object at once.
pub fn channel(cfg: &KafkaConfig) -> (watch::Sender<Framing>, SchemaIds) {
    let first = if cfg.wire_format == WireFormat::Confluent { Framing::Pending } else { Framing::SingleObject };
    let (tx, rx) = watch::channel(first);
    (tx, SchemaIds(rx))
}

/// Registers the current schemas (with `kafka.wire_format: confluent`),
/// retrying while the registry cannot be reached, until `stop`. A refusal
/// (incompatible, invalid, unauthorised) is logged and not retried.
pub async fn register(cfg: KafkaConfig, framing: watch::Sender<Framing>, mut stop: watch::Receiver<bool>) {
    if cfg.wire_format != WireFormat::Confluent {
        return;
    }
    let single = |framing: &watch::Sender<Framing>| framing.send_replace(Framing::SingleObject);
    let registry = match Registry::new(&cfg.schema_registry) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "records are single-object encoded");
            single(&framing);
            return;
        }
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        match register_all(&registry, &cfg).await {
            Ok(ids) => {
                tracing::info!(?ids, registry = %cfg.schema_registry.url, "schemas registered; records are framed in Confluent's wire format");
                framing.send_replace(Framing::Confluent(ids));
                return;
            }
            Err(e) if e.is_permanent() => {
                tracing::error!(error = %e, "the schema registry refused the agent's schemas; records are single-object encoded");
                single(&framing);
                return;
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "schema registry unreachable; records wait for it"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {
                single(&framing);
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

async fn register_all(
    registry: &Registry,
    cfg: &KafkaConfig,
) -> Result<BTreeMap<Stream, u32>, driftwatch_schemas::registry::RegistryError> {
    let mut ids = BTreeMap::new();
    for stream in Stream::ALL {
        let topic = cfg.topics.of(stream);
        ids.insert(stream, registry.register(&subject(topic), driftwatch_schemas::avro::current_schema_text(stream)).await?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_wait_for_the_registry_until_it_answers_or_the_agent_stops() {
        let mut ids = channel(&KafkaConfig::default()).1;
        assert_eq!(ids.decided().await, Framing::SingleObject, "no registry asked for: decided at once");

        // A registry nobody answers for: pending, until the agent stops.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = KafkaConfig { wire_format: WireFormat::Confluent, ..Default::default() };
        cfg.schema_registry.url = format!("http://127.0.0.1:{port}");
        let (tx, mut ids) = channel(&cfg);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(register(cfg, tx, stop));
        assert!(tokio::time::timeout(Duration::from_millis(300), ids.decided()).await.is_err(), "records wait");
        stop_tx.send(true).unwrap();
        assert_eq!(ids.decided().await, Framing::SingleObject, "what is queued at the stop is spooled single-object");
        task.await.unwrap();
    }
}
