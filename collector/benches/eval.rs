//! Evaluation cost, printed as figures (not a timed test):
//! - a one-fact delta as the number of controls grows from 100 to 5,000,
//!   against a full evaluation of the same set in the same run (the
//!   baseline the incremental index avoids);
//! - a full evaluation of 500 controls over a 2,000-fact snapshot, on one
//!   thread and shared out over a pool (`evaluation.threads`).
//!
//! Run: `cargo bench -p driftwatch-collector --bench eval`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch_collector::eval::Engine;
use driftwatch_collector::policy::{load_text, PolicySet};
use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, Fact, FactValue, SnapshotKind};

const FACTS: usize = 2_000;

/// `n` controls, control i reading `svc.k{i % FACTS}` (plus a mix of
/// functions so checks are not trivially cheap).
fn policies(n: usize) -> Arc<PolicySet> {
    let mut y = String::from("pack: bench\ncontrols:\n");
    for i in 0..n {
        let k = i % FACTS;
        let check = match i % 3 {
            0 => format!("svc.k{k} == \"v{k}\""),
            1 => format!("svc.k{k}.startsWith(\"v\") && size(svc.k{k}) > 1"),
            _ => format!("svc.k{k} in [\"a\", \"b\", \"v{k}\"]"),
        };
        y.push_str(&format!("  - {{id: c{i}, title: t, severity: low, check: '{check}', frameworks: {{soc2: [CC6.1]}}}}\n"));
    }
    Arc::new(PolicySet::new(load_text(Path::new("bench.yaml"), &y).expect("bench pack loads")))
}

fn snapshot(seq: i64, kind: SnapshotKind, facts: Vec<Fact>) -> ConfigSnapshot {
    ConfigSnapshot {
        asset: Asset { id: "bench".into(), kind: AssetKind::Host, hostname: "bench".into(), labels: Default::default() },
        agent_id: "bench".into(),
        agent_version: "0".into(),
        snapshot_id: format!("s{seq}"),
        sequence: seq,
        collected_at: Utc::now(),
        kind,
        facts,
        removed_paths: vec![],
    }
}

fn full_facts() -> Vec<Fact> {
    (0..FACTS).map(|k| Fact { path: format!("svc.k{k}"), value: FactValue::Str(format!("v{k}")) }).collect()
}

/// Mean time of `f` over enough runs to fill ~`budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm up
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 3 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    println!("evaluation benchmark ({FACTS} facts per asset)\n");
    println!("{:>9} {:>16} {:>16} {:>8}", "controls", "one-fact delta", "full snapshot", "ratio");
    for n in [100, 500, 1_000, 5_000] {
        let set = policies(n);
        let mut engine = Engine::new(set.clone(), chrono::Duration::minutes(10));
        engine.apply(&snapshot(1, SnapshotKind::Full, full_facts()));
        let mut seq = 1;
        let delta = time(Duration::from_millis(800), || {
            seq += 1;
            let v = if seq % 2 == 0 { "x" } else { "v0" };
            let a =
                engine.apply(&snapshot(seq, SnapshotKind::Delta, vec![Fact { path: "svc.k0".into(), value: FactValue::Str(v.into()) }]));
            assert!(!a.evaluations.is_empty());
        });
        let facts = full_facts();
        let full = time(Duration::from_millis(800), || {
            seq += 1;
            engine.apply(&snapshot(seq, SnapshotKind::Full, facts.clone()));
        });
        println!(
            "{n:>9} {:>14.1}µs {:>14.1}µs {:>7.1}x",
            delta.as_secs_f64() * 1e6,
            full.as_secs_f64() * 1e6,
            full.as_secs_f64() / delta.as_secs_f64()
        );
    }
    let set = policies(500);
    let facts = full_facts();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(2);
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("evaluation threads"));
    let mut seq = 0;
    let mut full = |mut engine: Engine| {
        time(Duration::from_secs(2), || {
            seq += 1;
            engine.apply(&snapshot(seq, SnapshotKind::Full, facts.clone()));
        })
    };
    let one = full(Engine::new(set.clone(), chrono::Duration::minutes(10)));
    let many = full(Engine::new(set, chrono::Duration::minutes(10)).with_pool(pool));
    println!("\nfull evaluation, 500 controls x {FACTS} facts: {:.2} ms on one thread", one.as_secs_f64() * 1e3);
    println!(
        "                 shared over {threads} threads: {:.2} ms ({:.2}x)",
        many.as_secs_f64() * 1e3,
        one.as_secs_f64() / many.as_secs_f64()
    );
}
