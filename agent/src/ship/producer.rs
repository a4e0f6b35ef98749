//! Shipping to Kafka, in two tasks joined by the on-disk [`Spool`]:
//!
//! 1. [`spool_messages`] redacts (see `redact.rs`: the one place every
//!    message passes), encodes (Avro single-object encoding) and appends
//!    to the spool. It never waits for the broker, so a slow or absent
//!    broker never holds up the collection of the next snapshot.
//! 2. [`send`] reads the spool in order and produces with an idempotent,
//!    `acks=all`, compressed producer, keyed by asset id so that each
//!    asset's messages stay in order on one partition. Up to [`WINDOW`]
//!    records are in flight; deliveries are acknowledged in spool order,
//!    and a failed one sends everything from the first undelivered record
//!    again (librdkafka keeps the order within a partition).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use driftwatch_schemas::identity::{self, KeyPair};
use driftwatch_schemas::{Encoder, Message};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::config::KafkaConfig;
use super::spool::{Pos, Record, Spool};
use crate::redact::Redactor;

/// Records handed to librdkafka and not yet acknowledged, at most.
pub const WINDOW: usize = 1_000;
/// How long a stopping agent keeps sending what is spooled.
const DRAIN: Duration = Duration::from_secs(10);

/// The outcome of one delivery, as librdkafka reports it.
type Delivery = oneshot::Receiver<Result<(), KafkaError>>;

/// Hands each delivery report to the task awaiting it.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let _ = to.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// librdkafka's producer with a thread of ours serving its delivery
/// reports. (rdkafka's `FutureProducer` polls every 100 ms and spins near
/// each deadline: about 1 % of a core on an idle agent; this thread blocks
/// up to a second per poll.)
pub struct KafkaProducer {
    inner: Arc<BaseProducer<Reports>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl KafkaProducer {
    /// Queues a record signed by `signer` (headers of
    /// `driftwatch_schemas::identity`); its delivery report arrives on the
    /// returned channel.
    fn send(&self, topic: &str, key: &str, payload: &[u8], signer: &KeyPair) -> Result<Delivery, KafkaError> {
        let (tx, rx) = oneshot::channel();
        let (public, signature) = signer.sign(payload);
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: identity::SIGNER_HEADER, value: Some(public) })
            .insert(Header { key: identity::SIGNATURE_HEADER, value: Some(&signature) });
        let record = BaseRecord::with_opaque_to(topic, Box::new(tx)).key(key).payload(payload).headers(headers);
        self.inner.send(record).map(|()| rx).map_err(|(e, _)| e)
    }

    fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.inner.client().fatal_error()
    }
}

impl Drop for KafkaProducer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.poller.take() {
            let _ = t.join();
        }
    }
}

/// The producer: idempotent (hence `acks=all`), compressed, with a long
/// delivery timeout (the spool holds what waits longer). `kafka.properties`
/// come last and may override any of these (security settings among them).
pub fn producer(cfg: &KafkaConfig) -> anyhow::Result<KafkaProducer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set("linger.ms", "20")
        .set("message.timeout.ms", "300000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    let inner: Arc<BaseProducer<Reports>> =
        Arc::new(c.create_with_context(Reports).map_err(|e| anyhow::anyhow!("Kafka producer for {}: {e}", cfg.brokers))?);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (inner, stop) = (inner.clone(), stop.clone());
        std::thread::Builder::new().name("kafka-reports".into()).spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                inner.poll(Duration::from_secs(1));
            }
        })?
    };
    Ok(KafkaProducer { inner, stop, poller: Some(poller) })
}

/// The spool, shared by the two tasks, and the bell rung when it grows.
#[derive(Clone)]
pub struct Shared {
    spool: Arc<Mutex<Spool>>,
    appended: Arc<Notify>,
}

impl Shared {
    pub fn new(spool: Spool) -> Shared {
        Shared { spool: Arc::new(Mutex::new(spool)), appended: Arc::new(Notify::new()) }
    }

    /// Delivery statistics (depth, drops, last acknowledgement).
    pub fn stats(&self) -> Arc<crate::ship::spool::Stats> {
        self.lock().stats()
    }

    /// Rings the bell (tests append directly).
    #[cfg(test)]
    pub(crate) fn appended_notify(&self) {
        self.appended.notify_one();
    }

    /// Rung when records are appended.
    pub(crate) fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock leaves the spool consistent on disk.
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Redacts, encodes and spools every message from `rx` until it closes,
/// framed as `ids` decides (messages wait while it is pending).
pub async fn spool_messages(
    shared: Shared,
    redactor: Redactor,
    mut ids: super::registry::SchemaIds,
    mut rx: mpsc::Receiver<Message>,
) -> anyhow::Result<()> {
    use super::registry::Framing;
    let mut encoder = Encoder::new()?;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let framing = ids.decided().await;
        let mut spool = shared.lock();
        for mut msg in batch.drain(..) {
            redactor.message(&mut msg);
            let encoded = match &framing {
                Framing::Confluent(ids) => match ids.get(&msg.stream()) {
                    Some(id) => encoder.encode_confluent(&msg, *id),
                    None => encoder.encode(&msg),
                },
                _ => encoder.encode(&msg),
            };
            let payload = match encoded {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, stream = ?msg.stream(), "cannot encode message; dropped");
                    continue;
                }
            };
            let rec = Record { stream: msg.stream(), key: msg.asset_id().to_string(), payload };
            match spool.append(&rec) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(dropped = n, "spool full: its oldest undelivered messages were dropped"),
                Err(e) => {
                    spool.stats().dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot spool message; dropped");
                }
            }
        }
        if let Err(e) = spool.flush() {
            tracing::error!(error = %e, "cannot flush the spool");
        }
        drop(spool);
        shared.appended.notify_one();
    }
    Ok(())
}

/// A record on its way: handed to librdkafka, or refused by it at once.
enum Flight {
    Pending(Delivery),
    Refused(KafkaError),
}

/// Whether the broker will refuse this record however often it is sent.
fn refused_for_good(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// Sends the spool to Kafka, each record signed by `signer`, until `stop`
/// turns true, then for up to [`DRAIN`] more while anything is left; what
/// is left stays spooled.
pub async fn send(
    cfg: KafkaConfig,
    mut producer: KafkaProducer,
    signer: Arc<KeyPair>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut cursor = shared.lock().acked();
    let mut inflight: VecDeque<(Flight, Pos)> = VecDeque::new();
    let mut persist = tokio::time::interval(Duration::from_secs(1));
    persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut persisted = cursor;
    let mut backoff = Duration::from_millis(200);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Fill the window from the spool.
        while inflight.len() < WINDOW {
            let Some((rec, next)) = shared.lock().read(cursor) else { break };
            match producer.send(cfg.topics.of(rec.stream), &rec.key, &rec.payload, &signer) {
                Ok(f) => inflight.push_back((Flight::Pending(f), next)),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => break,
                Err(e) => inflight.push_back((Flight::Refused(e), next)),
            }
            cursor = next;
        }
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| inflight.is_empty() || now >= d) {
            break;
        }
        let delivered = match inflight.front() {
            Some((Flight::Refused(e), _)) => Err(Some(e.clone())),
            _ => {
                let room = inflight.len() < WINDOW;
                let until = deadline.unwrap_or(now + Duration::from_secs(3600));
                tokio::select! {
                    r = front_delivery(&mut inflight) => r,
                    _ = shared.appended.notified(), if room => continue,
                    _ = persist.tick() => { persist_ack(&shared, &mut persisted); continue }
                    _ = stop.changed(), if deadline.is_none() => { deadline = Some(now + DRAIN); continue }
                    _ = tokio::time::sleep_until(until) => continue,
                }
            }
        };
        let (_, next) = inflight.pop_front().expect("the front record was awaited");
        match delivered {
            Ok(()) => {
                shared.lock().ack(next);
                backoff = Duration::from_millis(200);
            }
            Err(Some(e)) if refused_for_good(&e) => {
                tracing::error!(error = %e, "the broker refuses this message for good; dropped");
                shared.lock().skip(next);
            }
            Err(e) => {
                let closed = e.is_none();
                let error = e.map(|e| e.to_string()).unwrap_or_else(|| "producer closed".into());
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "delivery failed; sending again from the spool");
                // Everything after the failed record is sent again, in order.
                inflight.clear();
                cursor = shared.lock().acked();
                if let Some((code, reason)) = producer.fatal_error() {
                    tracing::warn!(?code, %reason, "the producer failed for good; starting a new one");
                    producer = self::producer(&cfg)?;
                } else if closed {
                    producer = self::producer(&cfg)?;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    persist_ack(&shared, &mut persisted);
    Ok(())
}

/// The delivery of the first record in flight (never ready when none is).
async fn front_delivery(inflight: &mut VecDeque<(Flight, Pos)>) -> Result<(), Option<KafkaError>> {
    match inflight.front_mut() {
        Some((Flight::Pending(f), _)) => match f.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Some(e)),
            Err(_closed) => Err(None),
        },
        _ => std::future::pending().await,
    }
}

fn persist_ack(shared: &Shared, persisted: &mut Pos) {
    let spool = shared.lock();
    if spool.acked() != *persisted {
        match spool.persist_ack() {
            Ok(()) => *persisted = spool.acked(),
            Err(e) => tracing::warn!(error = %e, "cannot record the spool position"),
        }
    }
}
