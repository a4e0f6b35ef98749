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
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

const USAGE: &str =
    "usage: loadgen [--brokers HOST:PORT] [--prefix TOPIC_PREFIX] [--assets N] [--rate MESSAGES_PER_S] [--seconds S] [--seed N]
               [--resume-after N]   (continue a run of the same seed after its full snapshots and first N messages)
Topics: <prefix>.snapshots, <prefix>.audit, <prefix>.sla. Prints what it sent.";

/// A realistic host's facts (about 60): sshd, sysctl, file modes, packages.
fn host_facts(rng: &mut StdRng) -> BTreeMap<String, FactValue> {
    let mut f = BTreeMap::new();
    let s = |v: &str| FactValue::Str(v.to_string());
    f.insert("os.id".into(), s(["debian", "ubuntu", "rhel"][rng.random_range(0..3)]));
    f.insert("sshd.installed".into(), FactValue::Bool(true));
    for (k, good, bad) in [
        ("permitrootlogin", "no", "yes"),
        ("passwordauthentication", "no", "yes"),
        ("permitemptypasswords", "no", "yes"),
        ("x11forwarding", "no", "yes"),
        ("maxauthtries", "4", "10"),
        ("loglevel", "VERBOSE", "QUIET"),
    ] {
        f.insert(format!("sshd.config.{k}"), s(if rng.random_bool(0.9) { good } else { bad }));
    }
    for (k, v) in [
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("kernel.randomize_va_space", "2"),
        ("fs.suid_dumpable", "0"),
        ("net.ipv4.tcp_syncookies", "1"),
    ] {
        f.insert(format!("kernel.sysctl[\"{k}\"].running"), s(v));
    }
    for (p, m) in [("/etc/shadow", "0640"), ("/etc/passwd", "0644"), ("/etc/ssh/sshd_config", "0600"), ("/etc/sudoers", "0440")] {
        f.insert(format!("files[\"{p}\"].exists"), FactValue::Bool(true));
        f.insert(format!("files[\"{p}\"].mode"), s(m));
        f.insert(format!("files[\"{p}\"].uid"), FactValue::Int(0));
    }
    for i in 0..30 {
        f.insert(format!("packages.installed[\"pkg{i:02}\"].version"), s(&format!("1.{}.{}", rng.random_range(0..9), i)));
    }
    f
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
    fn new(n: usize, seed: u64) -> Fleet {
        let mut rng = StdRng::seed_from_u64(seed);
        let assets = (0..n)
            .map(|i| {
                let labels = BTreeMap::from([
                    ("env".to_string(), ["prod", "staging"][i % 2].to_string()),
                    ("team".to_string(), format!("t{}", i % 7)),
                ]);
                let asset = Asset { id: format!("load-{i:05}"), kind: AssetKind::Host, hostname: format!("host-{i:05}"), labels };
                let f = host_facts(&mut rng);
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
            let key = ["permitrootlogin", "passwordauthentication", "x11forwarding"][self.rng.random_range(0..3)];
            let value = if self.rng.random_bool(0.5) { "yes" } else { "no" };
            let path = format!("sshd.config.{key}");
            self.assets[i].1.insert(path.clone(), FactValue::Str(value.into()));
            return self.snapshot(i, SnapshotKind::Delta, vec![Fact { path, value: FactValue::Str(value.into()) }]);
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
        .set("linger.ms", "5")
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
    let mut fleet = Fleet::new(a.assets, a.seed);
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
