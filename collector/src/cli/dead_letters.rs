//! `driftwatch-collector dead-letters list|replay`: what the dead-letter
//! topic holds (where each record came from and why it was refused), and
//! replaying it into the pipeline after an upgrade or a fix (a collector
//! that knows a newer agent's schema, a limit raised, a key approved).
//!
//! Replay produces each dead letter's record, with its key and its own
//! headers (its signer and signature: a replayed record is taken as the
//! asset's word only if it was signed), to the topic it came from, and
//! remembers how far it got in the consumer group
//! `<kafka.group_id>.dead-letter-replay`, so each dead letter is replayed
//! once. A truncated dead letter (a record too large to keep whole) cannot
//! be replayed and is said so. A replayed record the collector still
//! refuses becomes a new dead letter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::Serialize;

use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::ingest::decode::DEAD_LETTER_HEADERS;

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters: where each record came from and why it was refused.
    List(ListArgs),
    /// Produce the dead letters not replayed yet to the topics they came from (once each).
    Replay(ReplayArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// At most this many, the newest.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Only dead letters whose reason contains this text (the others are passed over, and not replayed later either).
    #[arg(long)]
    pub reason: Option<String>,
    /// Say what would be replayed; produce and remember nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One dead letter, as listed.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    /// Where it is in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    /// Where the record was, and why it was refused.
    pub topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub reason: String,
    pub bytes: usize,
    pub truncated: bool,
    #[serde(skip)]
    key: Option<Vec<u8>>,
    #[serde(skip)]
    payload: Option<Vec<u8>>,
    #[serde(skip)]
    headers: Vec<(String, Vec<u8>)>,
}

pub async fn run(config: Option<PathBuf>, command: DeadLettersCommand) -> anyhow::Result<()> {
    let cfg = CollectorConfig::load(config.as_deref())?;
    let k = &cfg.kafka;
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &k.brokers);
    for (key, v) in k.properties.iter() {
        client.set(key, v);
    }
    let topic = k.topics.dead_letter.clone();
    match command {
        DeadLettersCommand::List(args) => {
            let mut reader = client.clone();
            reader.set("group.id", format!("{}.dead-letters", k.group_id)).set("enable.auto.commit", "false");
            let t = topic.clone();
            let letters = tokio::task::spawn_blocking(move || read(&reader, &t, None)).await??;
            let shown: Vec<&DeadLetter> = letters.iter().rev().take(args.limit).collect::<Vec<_>>().into_iter().rev().collect();
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
                Format::Text => {
                    for d in &shown {
                        println!(
                            "{}/{}  from {} {}/{}  {} bytes{}  {}",
                            d.partition,
                            d.offset,
                            d.topic,
                            d.source_partition.map_or("?".into(), |p| p.to_string()),
                            d.source_offset.map_or("?".into(), |o| o.to_string()),
                            d.bytes,
                            if d.truncated { " (truncated)" } else { "" },
                            d.reason
                        );
                    }
                    eprintln!("{} dead letter(s) in {topic}, {} shown", letters.len(), shown.len());
                }
            }
        }
        DeadLettersCommand::Replay(args) => {
            let group = format!("{}.dead-letter-replay", k.group_id);
            let mut reader = client.clone();
            reader.set("group.id", &group).set("enable.auto.commit", "false");
            let (t, r) = (topic.clone(), reader.clone());
            let letters = tokio::task::spawn_blocking(move || read(&r, &t, Some(()))).await??;
            let producer: FutureProducer =
                client.clone().set("enable.idempotence", "true").set("acks", "all").create().context("the Kafka producer")?;
            let (mut replayed, mut passed, mut truncated) = (0, 0, 0);
            let mut done: BTreeMap<i32, i64> = BTreeMap::new();
            for d in &letters {
                done.insert(d.partition, d.offset + 1);
                if args.reason.as_ref().is_some_and(|r| !d.reason.contains(r.as_str())) {
                    passed += 1;
                    continue;
                }
                if d.truncated || d.payload.is_none() {
                    truncated += 1;
                    eprintln!("{}/{}: not replayed: only part of the record was kept ({})", d.partition, d.offset, d.reason);
                    continue;
                }
                if args.dry_run {
                    println!("would replay {}/{} to {}: {}", d.partition, d.offset, d.topic, d.reason);
                    replayed += 1;
                    continue;
                }
                let mut headers = OwnedHeaders::new();
                for (key, v) in &d.headers {
                    headers = headers.insert(Header { key, value: Some(v) });
                }
                let from = format!("{}/{}", d.partition, d.offset);
                headers = headers.insert(Header { key: "driftwatch.replayed_from", value: Some(&from) });
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&d.topic).headers(headers);
                if let Some(key) = &d.key {
                    record = record.key(key);
                }
                if let Some(p) = &d.payload {
                    record = record.payload(p);
                }
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("replaying {from} to {}: {e}", d.topic))?;
                replayed += 1;
            }
            if !args.dry_run && !done.is_empty() {
                let t = topic.clone();
                tokio::task::spawn_blocking(move || remember(&reader, &t, &done)).await??;
            }
            let verb = if args.dry_run { "would be replayed" } else { "replayed" };
            eprintln!(
                "{replayed} dead letter(s) {verb}, {truncated} truncated (not replayable), {passed} passed over by --reason; {} read from {topic} (group {group})",
                letters.len()
            );
        }
    }
    Ok(())
}

/// The dead letters of `topic` up to its end: all of them, or (`resume`)
/// those after what the reader's group has committed.
fn read(reader: &ClientConfig, topic: &str, resume: Option<()>) -> anyhow::Result<Vec<DeadLetter>> {
    const WAIT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer = reader.create().context("the Kafka consumer")?;
    let metadata = consumer.fetch_metadata(Some(topic), WAIT).with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (does it exist?)");
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let committed = match resume {
        Some(()) => {
            let mut ask = TopicPartitionList::new();
            for p in &partitions {
                ask.add_partition(topic, *p);
            }
            Some(consumer.committed_offsets(ask, WAIT).context("reading how far replay got")?)
        }
        None => None,
    };
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, WAIT).with_context(|| format!("the offsets of {topic}/{p}"))?;
        let from = committed
            .as_ref()
            .and_then(|c| c.find_partition(topic, *p))
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(low)
            .max(low);
        if from < high {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Offset(from))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let mut idle = 0;
    while !ends.is_empty() {
        let Some(m) = consumer.poll(Duration::from_secs(1)) else {
            idle += 1;
            anyhow::ensure!(idle < 30, "no record from {topic} for 30 s while {} partition(s) had more", ends.len());
            continue;
        };
        idle = 0;
        let m = m.with_context(|| format!("reading {topic}"))?;
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned()))
        };
        let own: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .filter(|x| !DEAD_LETTER_HEADERS.contains(&x.key))
                    .filter_map(|x| Some((x.key.to_string(), x.value?.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            topic: header("driftwatch.topic").unwrap_or_default(),
            source_partition: header("driftwatch.partition").and_then(|v| v.parse().ok()),
            source_offset: header("driftwatch.offset").and_then(|v| v.parse().ok()),
            reason: header("driftwatch.reason").unwrap_or_default(),
            bytes: header("driftwatch.original_size").and_then(|v| v.parse().ok()).unwrap_or(m.payload().map_or(0, <[u8]>::len)),
            truncated: header("driftwatch.truncated").as_deref() == Some("true"),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: own,
        });
        if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}

/// Commits `done` (partition → next offset) for the replay group.
fn remember(reader: &ClientConfig, topic: &str, done: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
    let consumer: BaseConsumer = reader.create().context("the Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for (p, next) in done {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*next))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).context("remembering how far replay got")
}
