//! The simulated fleet of `loadgen` and `memory-bench`: N hosts, each
//! what the agent itself collects from a fixture host plus packages of its
//! own, and the seeded mix a running fleet sends (deltas, audit events,
//! probe results). The same seed gives the same messages.

use std::collections::BTreeMap;

use chrono::Utc;
use driftwatch_schemas::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The fleet's host templates: what the agent itself collects from the
/// fixture hosts (`tests/fixtures/hosts/{hardened,sloppy}`), so every fact
/// family is there with the agent's paths and types (about 200 facts).
pub fn templates() -> Result<Vec<BTreeMap<String, FactValue>>, String> {
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

#[derive(Clone)]
pub struct Fleet {
    rng: StdRng,
    assets: Vec<(Asset, BTreeMap<String, FactValue>, i64)>,
    event: u64,
}

impl Fleet {
    pub fn new(n: usize, seed: u64, templates: &[BTreeMap<String, FactValue>]) -> Fleet {
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

    pub fn snapshot(&mut self, i: usize, kind: SnapshotKind, changed: Vec<Fact>) -> Message {
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
    pub fn next(&mut self) -> Message {
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
