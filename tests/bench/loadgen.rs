//! `loadgen`: simulates a fleet of agents. N assets each send a full
//! snapshot, then a seeded mix of deltas (a configuration change, now and
//! then one that breaks a control), audit events (SSH logins, sudo) and
//! probe results, into Kafka at a fixed rate. The same seed produces the
//! same messages, so two runs (a bare consumer, the collector) read the
//! same load. Every record is signed with its asset's key, as agents sign
//! theirs.
//!
//!   cargo run --release -p driftwatch-tests --bin loadgen -- \
//!       --assets 10000 --rate 10000 --seconds 60 --seed 42 --prefix bench
//!
//! The fleet itself (its hosts and its mix) is `fleet.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use driftwatch_schemas::*;
use fleet::{templates, Fleet};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[path = "fleet.rs"]
mod fleet;

struct Args {
    brokers: String,
    prefix: String,
    assets: usize,
    rate: u64,
    seconds: u64,
    seed: u64,
    /// Continue an earlier run of the same seed: generate (and drop) its
    /// full snapshots and its first N messages, then produce what follows,
    /// so sequences continue where the collector left them.
    resume_after: u64,
    /// The fleet sends a full snapshot of every asset again right after
    /// its P-th message (0: never): the periodic full snapshot, unchanged
    /// but for the deltas before it.
    fulls_at: u64,
    /// Send only that round of full snapshots (with `--resume-after P
    /// --fulls-at P`), nothing after it.
    only_fulls: bool,
    /// The producer's `linger.ms`: the agent's own (20) unless told.
    linger_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        brokers: "127.0.0.1:9092".into(),
        prefix: "driftwatch".into(),
        assets: 1000,
        rate: 1000,
        seconds: 30,
        seed: 42,
        resume_after: 0,
        fulls_at: 0,
        only_fulls: false,
        linger_ms: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--only-fulls" {
            a.only_fulls = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag}: a value is missing"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--brokers" => a.brokers = value,
            "--prefix" => a.prefix = value,
            "--assets" => a.assets = num(&value)? as usize,
            "--rate" => a.rate = num(&value)?.max(1),
            "--seconds" => a.seconds = num(&value)?,
            "--seed" => a.seed = num(&value)?,
            "--resume-after" => a.resume_after = num(&value)?,
            "--fulls-at" => a.fulls_at = num(&value)?,
            "--linger-ms" => a.linger_ms = num(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

const USAGE: &str =
    "usage: loadgen [--brokers HOST:PORT] [--prefix TOPIC_PREFIX] [--assets N] [--rate MESSAGES_PER_S] [--seconds S] [--seed N]
               [--resume-after N]   (continue a run of the same seed after its full snapshots and first N messages)
               [--fulls-at P]       (a full snapshot of every asset again right after the P-th message)
               [--only-fulls]       (with --resume-after P --fulls-at P: send that round of full snapshots only)
               [--linger-ms 20]     (the producer's linger.ms; 20 is the agent's)
Topics: <prefix>.snapshots, <prefix>.audit, <prefix>.sla. Prints what it sent.";

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}{USAGE}", if e.is_empty() { String::new() } else { format!("loadgen: {e}\n") });
            return std::process::ExitCode::from(2);
        }
    };
    let producer: BaseProducer = match ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        // As the agent produces (agent/src/ship/producer.rs). One producer
        // for a whole fleet sends fewer, larger requests than the fleet
        // would; the broker's cost here is per request.
        .set("linger.ms", a.linger_ms.to_string())
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "1000000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: Kafka producer for {}: {e}", a.brokers);
            return std::process::ExitCode::from(2);
        }
    };
    let mut encoder = Encoder::new().expect("the compiled-in schemas");
    let templates = match templates() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut fleet = Fleet::new(a.assets, a.seed, &templates);
    let topic = |m: &Message| {
        format!(
            "{}.{}",
            a.prefix,
            match m.stream() {
                Stream::Snapshots => "snapshots",
                Stream::Audit => "audit",
                Stream::Sla => "sla",
            }
        )
    };
    let mut sent: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Each asset's agent signs its records, as real agents do (the
    // collector refuses unsigned ones by default): one key per asset.
    let mut keys: std::collections::HashMap<String, driftwatch_schemas::identity::KeyPair> = std::collections::HashMap::new();
    let mut send = |m: &Message, producer: &BaseProducer| {
        let payload = encoder.encode(m).expect("encodes");
        let t = topic(m);
        let key = keys.entry(m.asset_id().to_string()).or_insert_with(|| driftwatch_tests::agent_key(m.asset_id()));
        let headers = driftwatch_tests::signed_by(key, &payload);
        loop {
            match producer.send(BaseRecord::to(&t).key(m.asset_id()).payload(&payload).headers(headers.clone())) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        *sent
            .entry(match m.stream() {
                Stream::Snapshots => "snapshots",
                Stream::Audit => "audit",
                Stream::Sla => "sla",
            })
            .or_default() += 1;
    };
    let start = Instant::now();
    if a.resume_after > 0 {
        for i in 0..a.assets {
            fleet.snapshot(i, SnapshotKind::Full, vec![]);
        }
        for n in 1..=a.resume_after {
            fleet.next();
            if n == a.fulls_at {
                let send_them = a.only_fulls && n == a.resume_after;
                for i in 0..a.assets {
                    let m = fleet.snapshot(i, SnapshotKind::Full, vec![]);
                    if send_them {
                        send(&m, &producer);
                        producer.poll(Duration::ZERO);
                    }
                }
            }
        }
    }
    for i in (0..a.assets).filter(|_| a.resume_after == 0) {
        let m = fleet.snapshot(i, SnapshotKind::Full, vec![]);
        send(&m, &producer);
        producer.poll(Duration::ZERO);
    }
    let total = if a.only_fulls { 0 } else { a.rate * a.seconds };
    let paced = Instant::now();
    for n in 0..total {
        // Pace: message n is due at n / rate seconds.
        let due = paced + Duration::from_secs_f64(n as f64 / a.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let m = fleet.next();
        send(&m, &producer);
        producer.poll(Duration::ZERO);
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!("loadgen: not every message was delivered: {e}");
        return std::process::ExitCode::from(1);
    }
    let secs = start.elapsed().as_secs_f64();
    let all: u64 = sent.values().sum();
    println!("loadgen: {all} messages in {secs:.1} s ({:.0}/s) to {}.*: {sent:?} (seed {})", all as f64 / secs, a.prefix, a.seed);
    std::process::ExitCode::SUCCESS
}
