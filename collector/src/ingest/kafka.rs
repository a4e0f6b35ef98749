//! The Kafka consumer group as a [`Source`]: records decoded (or sent to
//! the dead-letter topic with the reason), their offsets committed once
//! the consumer loop ([`super::run`]) stored their batch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{Message as _, TopicPartitionList};

use super::config::KafkaConfig;
use super::decode::{DeadLetters, Origin, RecordDecoder};
use super::identity::{self, IdentityGate};
use super::Source;
use crate::assets::AssetLabels;
use driftwatch_schemas::limits::Limits;
use driftwatch_schemas::registry::Registry;

/// A client of `cfg.brokers`: `defaults`, then the configured properties
/// (which win).
fn client_config(cfg: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// The consumer's defaults.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Alerts wait for the fetch that brings their record: a broker that
    // holds a fetch for its whole wait even when records arrive (tansu
    // does) would add librdkafka's default 500 ms to every alert.
    ("fetch.wait.max.ms", "100"),
    // librdkafka keeps fetching until 100,000 records per partition wait
    // locally (its default): with a backlog, a collector that evaluates
    // far slower than it fetches kept fetching at the end of each
    // partition, and each fetch costs the broker (tansu: ~9 ms of CPU;
    // 14 of the 37 s of the benchmark's storm). Two full batches per
    // partition are plenty.
    ("queued.min.messages", "10000"),
];

/// Notes partition assignments, so that the loop restores posture before
/// it evaluates a record of a newly assigned partition.
struct RebalanceContext {
    assigned: AtomicBool,
    /// Wakes the loop at an assignment, so that posture is read back while
    /// the first records of the new partitions are fetched.
    wake: Arc<tokio::sync::Notify>,
    /// Partition 0 of this topic decides who runs fleet-wide work (SLOs).
    leader_topic: String,
    leader: Arc<AtomicBool>,
    /// Consumption is paused (the memory ceiling): partitions assigned
    /// meanwhile are paused as they come.
    paused: AtomicBool,
}

impl ClientContext for RebalanceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer
    /// lag per assigned partition, for `/metrics`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                // -1 is librdkafka's internal unassigned partition; a
                // negative lag means not known yet. A partition this
                // consumer no longer fetches (revoked: `none`, `stopped`)
                // has no lag here: its owner reports it.
                if *id < 0 {
                    continue;
                }
                let lag = &crate::metrics::METRICS.consumer_lag;
                if p.consumer_lag >= 0 && !matches!(p.fetch_state.as_str(), "none" | "stopped" | "stopping") {
                    lag.with_label_values(&[name.as_str(), &id.to_string()]).set(p.consumer_lag);
                } else {
                    let _ = lag.remove_label_values(&[name.as_str(), &id.to_string()]);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if self.paused.load(Ordering::SeqCst) {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "could not pause the partitions just assigned");
                    }
                }
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.assigned.store(true, Ordering::SeqCst);
                self.wake.notify_one();
                if tpl.elements().iter().any(|e| e.topic() == self.leader_topic && e.partition() == 0) {
                    tracing::info!(topic = %self.leader_topic, "this collector now runs fleet-wide work (SLOs)");
                    self.leader.store(true, Ordering::SeqCst);
                    crate::metrics::leadership(true);
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                for e in tpl.elements() {
                    let _ = crate::metrics::METRICS.consumer_lag.remove_label_values(&[e.topic(), &e.partition().to_string()]);
                }
                if tpl.elements().iter().any(|e| e.topic() == self.leader_topic && e.partition() == 0) {
                    self.leader.store(false, Ordering::SeqCst);
                    crate::metrics::leadership(false);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// A record the collector could not decode, being sent to the dead-letter
/// topic by its own task: a cancelled `recv` neither loses nor repeats it.
struct DeadLetter {
    task: tokio::task::JoinHandle<()>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// The consumer group as a [`Source`].
pub struct KafkaSource {
    consumer: StreamConsumer<RebalanceContext>,
    /// Watches the group for partitions left without an owner.
    orphans: OrphanWatch,
    dlq: DeadLetters,
    decoder: RecordDecoder,
    dead: Option<DeadLetter>,
    /// Offsets after dead-lettered records, committed with the next batch.
    dead_offsets: HashMap<(String, i32), i64>,
    /// Checks each record's signer.
    identity: IdentityGate,
    /// A decoded record whose signer is being checked against the store.
    checking: Option<Checking>,
    /// The schema registry records in Confluent's wire format name their
    /// writer schema in (`kafka.schema_registry`).
    registry: Option<Registry>,
    /// A record naming a registry id not read yet, kept while its schema
    /// is fetched.
    fetching: Option<rdkafka::message::OwnedMessage>,
    /// Registry ids whose schema was refused, and why: their records are
    /// dead-lettered without asking again (at most
    /// [`decode::MAX_REGISTRY_SCHEMAS`] remembered).
    refused_ids: HashMap<u32, String>,
    /// How a record the store refused is read again (see [`read_again`]).
    reread: ClientConfig,
}

/// What becomes of a record just taken: decoded and admitted, its signer
/// to be checked against the store, its writer schema to be fetched from
/// the registry, or refused (dead-lettered with the reason).
enum Admit {
    Ready(driftwatch_schemas::Message),
    Check(driftwatch_schemas::Message, identity::Presented),
    Fetch,
    Refused(String),
}

/// A record waiting for [`IdentityGate::resolve`], owned (the consumer's
/// borrowed message cannot be kept across calls).
struct Checking {
    msg: driftwatch_schemas::Message,
    presented: identity::Presented,
    record: rdkafka::message::OwnedMessage,
}

/// A record's place: committed as the offset after it.
pub struct Offset {
    topic: String,
    partition: i32,
    next: i64,
}

impl Offset {
    fn after(m: &impl rdkafka::Message) -> Offset {
        Offset { topic: m.topic().to_string(), partition: m.partition(), next: m.offset() + 1 }
    }
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to the three streams; each
    /// record's signer is checked by `identity`.
    pub fn connect(
        cfg: &KafkaConfig,
        limits: &Limits,
        labels: AssetLabels,
        identity: IdentityGate,
        leader: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer<RebalanceContext> = client_config(cfg, CONSUMER_DEFAULTS)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "10000")
            .create_with_context(RebalanceContext {
                assigned: AtomicBool::new(false),
                wake: Arc::default(),
                leader_topic: cfg.topics.sla.clone(),
                leader,
                paused: AtomicBool::new(false),
            })
            .map_err(|e| anyhow::anyhow!("Kafka consumer for {}: {e}", cfg.brokers))?;
        // A dead letter is acknowledged or refused within 30 s (librdkafka
        // waits 5 minutes by default), so that a refused one is soon skipped.
        let mut dlq_config = client_config(cfg, &[("message.timeout.ms", "30000")]);
        let max_bytes = dlq_config.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let dlq = DeadLetters {
            producer: dlq_config
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create()
                .map_err(|e| anyhow::anyhow!("Kafka dead-letter producer for {}: {e}", cfg.brokers))?,
            topic: cfg.topics.dead_letter.clone(),
            max_bytes,
        };
        let topics = [cfg.topics.snapshots.as_str(), cfg.topics.audit.as_str(), cfg.topics.sla.as_str()];
        consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("subscribing to {topics:?}: {e}"))?;
        tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, ?topics, "consuming");
        let probe: BaseConsumer = client_config(cfg, CONSUMER_DEFAULTS)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| anyhow::anyhow!("Kafka offsets client for {}: {e}", cfg.brokers))?;
        let session_timeout = cfg
            .properties
            .get("session.timeout.ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(45));
        Ok(KafkaSource {
            consumer,
            orphans: OrphanWatch::new(probe, topics.map(String::from).to_vec(), session_timeout),
            dlq,
            decoder: RecordDecoder::new(&cfg.topics, limits)?.with_labels(labels),
            dead: None,
            dead_offsets: HashMap::new(),
            identity,
            checking: None,
            registry: if cfg.schema_registry.is_set() {
                Some(Registry::new(&cfg.schema_registry).map_err(|e| anyhow::anyhow!("kafka.schema_registry: {e}"))?)
            } else {
                None
            },
            fetching: None,
            refused_ids: HashMap::new(),
            reread: client_config(cfg, CONSUMER_DEFAULTS)
                .set("group.id", &cfg.group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .clone(),
        })
    }

    /// Decodes a record and checks its signer, as far as can be done
    /// without waiting (see [`Admit`]). Takes the fields it needs, so that
    /// the consumer's borrowed record can be admitted.
    fn admit(
        decoder: &RecordDecoder,
        gate: &mut IdentityGate,
        registry: Option<&Registry>,
        refused_ids: &HashMap<u32, String>,
        m: &impl rdkafka::Message,
        headers: Option<&rdkafka::message::BorrowedHeaders>,
    ) -> Admit {
        if let Some(id) = decoder.unknown_schema_id(m.topic(), m.payload()) {
            if let Some(reason) = refused_ids.get(&id) {
                return Admit::Refused(reason.clone());
            }
            if registry.is_none() {
                return Admit::Refused(format!(
                    "unknown writer schema id {id} (Confluent wire format): no kafka.schema_registry is configured"
                ));
            }
            return Admit::Fetch;
        }
        let msg = match decoder.decode(m.topic(), m.payload()) {
            Ok(msg) => msg,
            Err(reason) => return Admit::Refused(reason),
        };
        let presented = identity::presented(headers, m.payload().unwrap_or_default());
        match gate.verdict_cached(msg.asset_id(), &presented) {
            Some(verdict) => match gate.apply(msg.asset_id(), &presented, verdict) {
                Ok(()) => Admit::Ready(msg),
                Err(reason) => Admit::Refused(reason),
            },
            None => Admit::Check(msg, presented),
        }
    }

    /// Starts sending an undecodable record to the dead-letter topic (see
    /// [`DeadLetters::send`]: it ends, written or skipped past).
    fn start_dead_letter(dlq: &DeadLetters, m: &impl rdkafka::Message, reason: String) -> DeadLetter {
        let dlq = dlq.clone();
        let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
        let (key, payload) = (m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec));
        let headers = super::decode::headers_of(m);
        let origin_topic = topic.clone();
        let task = tokio::spawn(async move {
            let origin = Origin { topic: &origin_topic, partition, offset };
            dlq.send(&origin, key.as_deref(), payload.as_deref(), &headers, &reason).await;
        });
        DeadLetter { task, topic, partition, offset }
    }

    /// Waits until the dead letter being sent is taken: its offset must
    /// not be committed before. Cancel-safe.
    async fn land_dead_letter(&mut self) {
        let Some(d) = &mut self.dead else { return };
        if let Err(e) = (&mut d.task).await {
            tracing::error!(error = %e, "the dead-letter task failed");
        }
        self.dead_offsets.insert((d.topic.clone(), d.partition), d.offset + 1);
        self.dead = None;
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    type Ack = Offset;

    async fn recv(&mut self) -> Option<(driftwatch_schemas::Message, Offset)> {
        loop {
            self.land_dead_letter().await;
            // A record whose signer must be checked against the store: kept
            // here until decided, so that a cancelled call resumes it.
            if let Some(c) = &self.checking {
                let verdict = self.identity.resolve(c.msg.asset_id(), &c.presented).await;
                let Some(c) = self.checking.take() else { continue };
                match self.identity.apply(c.msg.asset_id(), &c.presented, verdict) {
                    Ok(()) => return Some((c.msg, Offset::after(&c.record))),
                    Err(reason) => self.dead = Some(Self::start_dead_letter(&self.dlq, &c.record, reason)),
                }
                continue;
            }
            // A record naming a registry id not read yet: its schema is
            // fetched (a refusal is remembered), then the record is taken
            // as if it had just arrived.
            if let Some(record) = &self.fetching {
                let id = record.payload().and_then(driftwatch_schemas::avro::confluent_schema_id).unwrap_or_default();
                let fetched = match &self.registry {
                    Some(registry) => fetch_schema(registry, id).await,
                    None => Err("no kafka.schema_registry is configured".to_string()),
                };
                let Some(record) = self.fetching.take() else { continue };
                // A refusal dead-letters this record and is remembered for
                // the next ones naming the id (while there is room).
                if let Err(reason) = fetched.and_then(|schema| self.decoder.add_registry_schema(record.topic(), id, &schema)) {
                    tracing::warn!(id, %reason, "records naming this schema id are dead-lettered");
                    if self.refused_ids.len() < super::decode::MAX_REGISTRY_SCHEMAS {
                        self.refused_ids.insert(id, reason.clone());
                    }
                    self.dead = Some(Self::start_dead_letter(&self.dlq, &record, reason));
                    continue;
                }
                let headers = record.headers().map(|h| h.as_borrowed());
                match Self::admit(&self.decoder, &mut self.identity, self.registry.as_ref(), &self.refused_ids, &record, headers) {
                    Admit::Ready(msg) => return Some((msg, Offset::after(&record))),
                    Admit::Check(msg, presented) => self.checking = Some(Checking { msg, presented, record: record.clone() }),
                    // The id was just added: not asked twice.
                    Admit::Fetch => {
                        self.dead = Some(Self::start_dead_letter(&self.dlq, &record, format!("schema registry id {id}: still unknown")))
                    }
                    Admit::Refused(reason) => self.dead = Some(Self::start_dead_letter(&self.dlq, &record, reason)),
                }
                continue;
            }
            let m = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    continue;
                }
            };
            if let Some(at) = m.timestamp().to_millis() {
                let age_ms = chrono::Utc::now().timestamp_millis().saturating_sub(at).max(0);
                crate::metrics::METRICS.record_age_seconds.observe(age_ms as f64 / 1000.0);
            }
            // From here to the return nothing awaits: a record taken from
            // the consumer is returned, dead-lettered or kept in `checking`.
            match Self::admit(&self.decoder, &mut self.identity, self.registry.as_ref(), &self.refused_ids, &m, m.headers()) {
                Admit::Ready(msg) => return Some((msg, Offset::after(&m))),
                Admit::Check(msg, presented) => self.checking = Some(Checking { msg, presented, record: m.detach() }),
                Admit::Fetch => self.fetching = Some(m.detach()),
                Admit::Refused(reason) => self.dead = Some(Self::start_dead_letter(&self.dlq, &m, reason)),
            }
        }
    }

    fn reassigned(&mut self) -> bool {
        let reassigned = self.consumer.context().assigned.swap(false, Ordering::SeqCst);
        if reassigned {
            // Assets new to this collector: their keys may have changed
            // while another collector held them.
            self.identity.refresh_soon();
            // A record still being checked is fetched again from the
            // committed offset if its partition is still this collector's;
            // so is one waiting for its writer schema.
            self.checking = None;
            self.fetching = None;
        }
        reassigned
    }

    fn pause(&mut self, paused: bool) {
        self.consumer.context().paused.store(paused, Ordering::SeqCst);
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => return tracing::warn!(error = %e, "could not read the assignment to pause or resume it"),
        };
        let done = if paused { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if let Err(e) = done {
            tracing::warn!(error = %e, paused, "could not pause or resume the assigned partitions");
        }
    }

    fn reassignments(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.consumer.context().wake.clone())
    }

    async fn upkeep(&mut self) {
        // The look at the group runs in the background (its requests
        // block); its answer is taken at a later call.
        let w = &mut self.orphans;
        let Some(task) = w.looking.take_if(|t| t.is_finished()) else {
            if w.looking.is_none() && Instant::now() >= w.next_check {
                w.next_check = Instant::now() + ORPHAN_CHECK;
                let (probe, topics) = (w.probe.clone(), w.topics.clone());
                w.looking = Some(tokio::task::spawn_blocking(move || offsets_view(&probe, &topics)));
            }
            return;
        };
        let view = match task.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not look at the group's offsets");
                return;
            }
            Err(_) => return,
        };
        let held: HashSet<(String, i32)> = self
            .consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
            .unwrap_or_default();
        if self.orphans.progress.observe(&view, &held, Instant::now()) {
            tracing::warn!(
                held = held.len(),
                partitions = view.len(),
                "partitions this collector does not hold have made no progress while their records wait, and its own do: \
                 their owner is gone but the group coordinator has not reassigned them; joining the group again"
            );
            self.consumer.unsubscribe();
            let topics: Vec<&str> = self.orphans.topics.iter().map(String::as_str).collect();
            if let Err(e) = self.consumer.subscribe(&topics) {
                tracing::error!(error = %e, "subscribing again failed");
            }
        }
    }

    /// The record was let go of when decoded: it is read again by offset
    /// for its dead letter (headers only, saying why, if it cannot be).
    async fn refuse(&mut self, ack: &Offset, reason: &str) {
        let (topic, partition, offset) = (ack.topic.clone(), ack.partition, ack.next - 1);
        let reread = self.reread.clone();
        let again = tokio::task::spawn_blocking(move || read_again(&reread, &topic, partition, offset))
            .await
            .unwrap_or_else(|e| Err(format!("the reading task failed: {e}")));
        let origin = Origin { topic: &ack.topic, partition, offset };
        match again {
            Ok(m) => self.dlq.send(&origin, m.key(), m.payload(), &super::decode::headers_of(&m), reason).await,
            Err(why) => self.dlq.send(&origin, None, None, &[], &format!("{reason} (the record could not be read again: {why})")).await,
        }
    }

    async fn commit(&mut self, acks: Vec<Offset>) {
        // Keys pinned or held by these records are stored before them.
        self.identity.save().await;
        let mut offsets = std::mem::take(&mut self.dead_offsets);
        for a in acks {
            let o = offsets.entry((a.topic, a.partition)).or_insert(a.next);
            *o = (*o).max(a.next);
        }
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset)) {
                tracing::warn!(error = %e, topic, partition, "cannot commit this offset");
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            // The batch is stored; a failed commit (e.g. the partition was
            // revoked meanwhile) only means redelivery, which the store folds.
            tracing::warn!(error = %e, "offset commit failed; records will be redelivered");
        }
    }
}

/// Reads the record at `offset` of a partition again, with a consumer of
/// its own that joins no group and commits nothing. Blocking.
fn read_again(cfg: &ClientConfig, topic: &str, partition: i32, offset: i64) -> Result<rdkafka::message::OwnedMessage, String> {
    const WITHIN: Duration = Duration::from_secs(15);
    let consumer: BaseConsumer = cfg.create().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset)).map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let until = Instant::now() + WITHIN;
    while Instant::now() < until {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if m.offset() == offset => return Ok(m.detach()),
            Some(Ok(m)) if m.offset() > offset => return Err(format!("offset {offset} is gone (read {} first)", m.offset())),
            Some(Err(e)) => return Err(e.to_string()),
            _ => {}
        }
    }
    Err(format!("not read within {} s", WITHIN.as_secs()))
}

/// How often the group's offsets are looked at for orphaned partitions.
const ORPHAN_CHECK: Duration = Duration::from_secs(10);

/// A guard against a group coordinator that drops a dead member (no
/// heartbeat within `session.timeout.ms`) but never gives its partitions
/// to the survivors: tansu 0.6 keeps the old assignment when the dead
/// member was the group's leader. Kafka itself rebalances, and then this
/// never acts. The protocol does not show other members' assignments
/// here, so the sign is progress: a partition this collector does not
/// hold whose records wait (log end past the group's committed offset)
/// with no commit for `stall` — while every partition it holds that has
/// records waiting did commit in that time (so the store is not what
/// stalls everyone). The collector then leaves and joins the group again,
/// which forms a new generation; it waits `5 × stall` before acting again.
struct OrphanWatch {
    /// A client of the group that never joins it: offset and metadata
    /// requests, which block (run off the runtime).
    probe: Arc<BaseConsumer>,
    topics: Vec<String>,
    next_check: Instant,
    /// The look in progress.
    looking: Option<tokio::task::JoinHandle<Result<Vec<PartitionOffsets>, rdkafka::error::KafkaError>>>,
    progress: Progress,
}

/// The rule of [`OrphanWatch`], over what its looks saw.
struct Progress {
    stall: Duration,
    quiet_until: Instant,
    /// Per partition: the committed offset last seen, and since when.
    committed: HashMap<(String, i32), (i64, Instant)>,
}

/// One partition of a subscribed topic: the group's committed offset (the
/// log start when none) and the log end.
struct PartitionOffsets {
    topic: String,
    partition: i32,
    committed: i64,
    end: i64,
}

impl OrphanWatch {
    fn new(probe: BaseConsumer, topics: Vec<String>, session_timeout: Duration) -> Self {
        let now = Instant::now();
        OrphanWatch {
            probe: Arc::new(probe),
            topics,
            next_check: now + ORPHAN_CHECK,
            looking: None,
            progress: Progress::new((session_timeout * 3).max(Duration::from_secs(20)), now),
        }
    }
}

impl Progress {
    fn new(stall: Duration, now: Instant) -> Self {
        Progress { stall, quiet_until: now + stall, committed: HashMap::new() }
    }

    /// Takes in a look at the offsets; true when partitions are orphaned.
    fn observe(&mut self, view: &[PartitionOffsets], held: &HashSet<(String, i32)>, now: Instant) -> bool {
        let mut others_stalled = false;
        let mut mine_stalled = false;
        for p in view {
            let key = (p.topic.clone(), p.partition);
            let since = match self.committed.get(&key) {
                Some((c, since)) if *c == p.committed => *since,
                _ => {
                    self.committed.insert(key.clone(), (p.committed, now));
                    now
                }
            };
            if p.end > p.committed && now.duration_since(since) >= self.stall {
                if held.contains(&key) {
                    mine_stalled = true;
                } else {
                    others_stalled = true;
                }
            }
        }
        if others_stalled && !mine_stalled && now >= self.quiet_until {
            self.quiet_until = now + self.stall * 5;
            self.committed.clear();
            return true;
        }
        false
    }
}

/// The committed offset and log end of every partition of `topics`.
fn offsets_view(probe: &BaseConsumer, topics: &[String]) -> Result<Vec<PartitionOffsets>, rdkafka::error::KafkaError> {
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let meta = probe.fetch_metadata(Some(t), timeout)?;
        for m in meta.topics().iter().filter(|m| m.name() == t) {
            for p in m.partitions() {
                tpl.add_partition(t, p.id());
            }
        }
    }
    let committed = probe.committed_offsets(tpl, timeout)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, end) = probe.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => low,
        };
        out.push(PartitionOffsets { topic: e.topic().to_string(), partition: e.partition(), committed, end });
    }
    Ok(out)
}

/// The writer schema registered under `id`: asked again (with backoff, up
/// to 30 s apart) while the registry cannot answer; its refusal is the
/// reason the records naming `id` are dead-lettered. Cancel-safe.
async fn fetch_schema(registry: &Registry, id: u32) -> Result<String, String> {
    let counted = |outcome: &str| crate::metrics::METRICS.schema_registry_requests.with_label_values(&[outcome]).inc();
    let mut backoff = Duration::from_millis(500);
    loop {
        match registry.schema(id).await {
            Ok(schema) => {
                counted("fetched");
                return Ok(schema);
            }
            Err(e) if e.is_permanent() => {
                counted("refused");
                return Err(e.to_string());
            }
            Err(e) => {
                counted("unreachable");
                tracing::warn!(id, error = %e, retry_in = ?backoff, "schema registry unreachable: records naming this id wait");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(offsets: &[(i32, i64, i64)]) -> Vec<PartitionOffsets> {
        offsets
            .iter()
            .map(|(p, committed, end)| PartitionOffsets { topic: "t".into(), partition: *p, committed: *committed, end: *end })
            .collect()
    }

    #[test]
    fn orphaned_only_when_others_stall_while_ours_progress() {
        let t0 = Instant::now();
        let s = Duration::from_secs(20);
        let held: HashSet<(String, i32)> = [("t".to_string(), 0)].into();
        let mut p = Progress::new(s, t0);
        // Partition 1 (another member's) waits with no commit; ours is caught up.
        assert!(!p.observe(&look(&[(0, 5, 5), (1, 3, 9)]), &held, t0));
        assert!(!p.observe(&look(&[(0, 7, 7), (1, 3, 9)]), &held, t0 + s / 2), "not stalled long enough yet");
        assert!(p.observe(&look(&[(0, 7, 7), (1, 3, 9)]), &held, t0 + s), "stalled for the whole window");
        assert!(!p.observe(&look(&[(0, 7, 7), (1, 3, 9)]), &held, t0 + s * 2), "quiet for a while after acting");

        // Everyone stalls (the store is down): not an orphan.
        let mut p = Progress::new(s, t0);
        p.observe(&look(&[(0, 5, 8), (1, 3, 9)]), &held, t0);
        assert!(!p.observe(&look(&[(0, 5, 8), (1, 3, 9)]), &held, t0 + s * 2));

        // The other member commits: alive.
        let mut p = Progress::new(s, t0);
        p.observe(&look(&[(0, 5, 5), (1, 3, 9)]), &held, t0);
        p.observe(&look(&[(0, 5, 5), (1, 6, 9)]), &held, t0 + s / 2);
        assert!(!p.observe(&look(&[(0, 5, 5), (1, 6, 9)]), &held, t0 + s), "committed half a window ago");
        // Nothing waits there: nothing to take over.
        assert!(!p.observe(&look(&[(0, 5, 5), (1, 9, 9)]), &held, t0 + s * 3));
    }
}
