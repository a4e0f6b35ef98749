//! `loadgen`: simulates a fleet of agents. N assets each send a full
//! snapshot, then a seeded mix of deltas (a configuration change, now and
//! then one that breaks a control), audit events (SSH logins, sudo) and
//! probe results, into Kafka at a fixed rate. The same seed produces the
//! same messages, so two runs (a bare consumer, the collector) read the
//! same load.
//!
//!   cargo run --release -p driftwatch-tests --bin loadgen -- \
//!       --assets 10000 --rate 10000 --seconds 60 --seed 42 --prefix bench

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch_schemas::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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
        linger_ms: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
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
            "--linger-ms" => a.linger_ms = num(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

const USAGE: &str =
    "usage: loadgen [--brokers HOST:PORT] [--prefix TOPIC_PREFIX] [--assets N] [--rate MESSAGES_PER_S] [--seconds S] [--seed N]
               [--resume-after N]   (continue a run of the same seed after its full snapshots and first N messages)
               [--linger-ms 20]     (the producer's linger.ms; 20 is the agent's)
Topics: <prefix>.snapshots, <prefix>.audit, <prefix>.sla. Prints what it sent.";

/// The fleet's host templates: what the agent itself collects from the
/// fixture hosts (`tests/fixtures/hosts/{hardened,sloppy}`), so every fact
/// family is there with the agent's paths and types (about 200 facts).
fn templates() -> Result<Vec<BTreeMap<String, FactValue>>, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hosts");
    ["hardened", "sloppy"]
        .iter()
        .map(|name| {
            let root = dir.join(name);
            if !root.join("etc").is_dir() {
                return Err(format!("{}: the fixture host is missing (run loadgen from a checkout of the repository)", root.display()));
            }
            let cfg = driftwatch_agent::config::FactsConfig::default();
            let facts = driftwatch_agent::facts::collect(&driftwatch_agent::root::HostRoot::new(root), &cfg, None);
            Ok(facts.to_wire().into_iter().map(|f| (f.path, f.value)).collect())
        })
        .collect()
}

fn path(segments: &[&str]) -> String {
    FactPath::new(segments.iter().copied()).to_string()
}

/// One asset's facts: a template (three in four hardened), its own
/// hostname, 100–300 more installed packages (a real server has hundreds:
/// most of a snapshot's facts), and now and then a weaker sshd setting.
fn host_facts(templates: &[BTreeMap<String, FactValue>], hostname: &str, rng: &mut StdRng) -> BTreeMap<String, FactValue> {
    let mut f = templates[usize::from(rng.random_bool(0.25)) % templates.len()].clone();
    f.insert("os.hostname".into(), FactValue::Str(hostname.into()));
    let mut installed = match f.remove("packages.installed") {
        Some(FactValue::List(l)) => l,
        _ => Vec::new(),
    };
    for k in 0..rng.random_range(100..300) {
        let name = format!("lib{k:03}-bench");
        f.insert(path(&["packages", "version", &name]), FactValue::Str(format!("1.{}.{k}-1", rng.random_range(0..9))));
        installed.push(name);
    }
    f.insert("packages.installed".into(), FactValue::List(installed));
    for key in SSHD_KEYS {
        if rng.random_bool(0.1) {
            f.insert(format!("sshd.config.{key}"), sshd_setting(key, true));
        }
    }
    f
}

/// sshd settings a change flips between a compliant and a weak value.
const SSHD_KEYS: [&str; 4] = ["permitrootlogin", "passwordauthentication", "x11forwarding", "maxauthtries"];

fn sshd_setting(key: &str, weak: bool) -> FactValue {
    match key {
        "maxauthtries" => FactValue::Int(if weak { 10 } else { 3 }),
        _ => FactValue::Str(if weak { "yes" } else { "no" }.into()),
    }
}

fn facts(m: &BTreeMap<String, FactValue>) -> Vec<Fact> {
    m.iter().map(|(p, v)| Fact { path: p.clone(), value: v.clone() }).collect()
}

struct Fleet {
    rng: StdRng,
    assets: Vec<(Asset, BTreeMap<String, FactValue>, i64)>,
    event: u64,
}

impl Fleet {
    fn new(n: usize, seed: u64, templates: &[BTreeMap<String, FactValue>]) -> Fleet {
        let mut rng = StdRng::seed_from_u64(seed);
        let assets = (0..n)
            .map(|i| {
                let labels = BTreeMap::from([
                    ("env".to_string(), ["prod", "staging"][i % 2].to_string()),
                    ("team".to_string(), format!("t{}", i % 7)),
                ]);
                let asset = Asset { id: format!("load-{i:05}"), kind: AssetKind::Host, hostname: format!("host-{i:05}"), labels };
                let f = host_facts(templates, &asset.hostname, &mut rng);
                (asset, f, 0)
            })
            .collect();
        Fleet { rng, assets, event: 0 }
    }

    fn snapshot(&mut self, i: usize, kind: SnapshotKind, changed: Vec<Fact>) -> Message {
        let (asset, f, seq) = &mut self.assets[i];
        *seq += 1;
        Message::Snapshot(ConfigSnapshot {
            asset: asset.clone(),
            agent_id: format!("agent-{i}"),
            agent_version: "0.1.0".into(),
            snapshot_id: format!("{}-{}", asset.id, seq),
            sequence: *seq,
            collected_at: Utc::now(),
            kind,
            facts: if kind == SnapshotKind::Full { facts(f) } else { changed },
            removed_paths: vec![],
        })
    }

    /// The next message of the mix: 10 % deltas, 60 % audit, 30 % probes.
    fn next(&mut self) -> Message {
        self.event += 1;
        let i = self.rng.random_range(0..self.assets.len());
        let roll = self.rng.random_range(0..100);
        let id = self.assets[i].0.id.clone();
        let host = self.assets[i].0.hostname.clone();
        if roll < 10 {
            // A change: half of them a package upgrade, most of the rest an
            // sshd setting flipped (now and then into a violation), some a
            // sensitive file's mode.
            let change = self.rng.random_range(0..10);
            let (path, value) = if change < 5 {
                let k = self.rng.random_range(0..100);
                let version = format!("1.{}.{k}-{}", self.rng.random_range(0..9), self.rng.random_range(2..9));
                (path(&["packages", "version", &format!("lib{k:03}-bench")]), FactValue::Str(version))
            } else if change < 9 {
                let key = SSHD_KEYS[self.rng.random_range(0..SSHD_KEYS.len())];
                (format!("sshd.config.{key}"), sshd_setting(key, self.rng.random_bool(0.5)))
            } else {
                let mode = if self.rng.random_bool(0.5) { "0640" } else { "0644" };
                (path(&["files", "/etc/shadow", "mode"]), FactValue::Str(mode.into()))
            };
            self.assets[i].1.insert(path.clone(), value.clone());
            return self.snapshot(i, SnapshotKind::Delta, vec![Fact { path, value }]);
        }
        if roll < 70 {
            let user = format!("user{}", self.rng.random_range(0..50));
            let failed = self.rng.random_bool(0.3);
            return Message::Audit(AuditEvent {
                event_id: format!("{id}-{}", self.event),
                asset_id: id,
                hostname: host.clone(),
                source: AuditSource::Authlog,
                timestamp: Utc::now(),
                actor: Actor { user: Some(user.clone()), uid: None, auid: None, groups: vec![] },
                action: if failed { "ssh_login_failed" } else { "ssh_login" }.into(),
                object: None,
                outcome: if failed { Outcome::Failure } else { Outcome::Success },
                source_address: Some(format!("10.0.{}.{}", self.rng.random_range(0..255), self.rng.random_range(1..255))),
                raw: format!(
                    "Nov 29 10:00:00 {host} sshd[1234]: {} password for {user} from 10.0.0.1 port 22 ssh2",
                    if failed { "Failed" } else { "Accepted" }
                ),
                extra: BTreeMap::new(),
            });
        }
        let ok = self.rng.random_bool(0.98);
        Message::Sla(SlaMeasurement {
            asset_id: id,
            probe_id: "web".into(),
            target: "https://127.0.0.1/health".into(),
            kind: ProbeKind::Http,
            timestamp: Utc::now(),
            success: ok,
            latency_us: self.rng.random_range(800..40_000),
            status_code: Some(if ok { 200 } else { 503 }),
            error: (!ok).then(|| "status: got 503, expected 2xx".into()),
            host_metrics: None,
            cert_days_left: Some(60),
            agent_health: None,
        })
    }
}

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
    let mut send = |m: &Message, producer: &BaseProducer| {
        let payload = encoder.encode(m).expect("encodes");
        let t = topic(m);
        loop {
            match producer.send(BaseRecord::to(&t).key(m.asset_id()).payload(&payload)) {
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
        for _ in 0..a.resume_after {
            fleet.next();
        }
    }
    for i in (0..a.assets).filter(|_| a.resume_after == 0) {
        let m = fleet.snapshot(i, SnapshotKind::Full, vec![]);
        send(&m, &producer);
        producer.poll(Duration::ZERO);
    }
    let total = a.rate * a.seconds;
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
