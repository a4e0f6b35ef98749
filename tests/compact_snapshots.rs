//! Issue 31: a snapshot stores what it changes only. The same recorded
//! history (the seeded fleet `loadgen` sends: realistic hosts of ~400
//! facts, deltas, audit events, probes, with full snapshots every few
//! steps, a removed fact, relabelled, stale and silent assets, a waiver,
//! and a collector restart that redelivers a batch) is replayed through the real
//! engine and packs into both storage shapes (every fact and result
//! stored again, and changes only) in both stores. Every read must answer
//! the same from both shapes; an unchanged full snapshot must be a few
//! rows instead of hundreds; the evidence chain must verify; and the facts
//! rebuilt from the changes-only rows must match every full snapshot's
//! facts digest.

#[path = "bench/fleet.rs"]
#[allow(dead_code)]
mod fleet;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use driftwatch_collector::config::ClickHouseConfig;
use driftwatch_collector::eval::{Engine, PostureEntry};
use driftwatch_collector::store::clickhouse::ClickHouseStore;
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::store::sqlite::SqliteStore;
use driftwatch_collector::store::Batch;
use driftwatch_schemas::{Message, SnapshotKind};
use driftwatch_tests::*;

const ASSETS: usize = 6;
const STEPS: usize = 37;
/// A full snapshot of every asset every this many steps.
const FULL_EVERY: usize = 6;
const REMOVE_AT: usize = 12;
const WAIVER_AT: usize = 15;
const RELABEL_AT: usize = 18;
const GAP_AT: usize = 20;
/// Before this step the collector restarts: posture is read back from the
/// store and the step before is delivered again.
const RESTART_AT: usize = 27;
/// Asset 4 sends nothing from `SILENT_FROM` on; before `SILENT_AT` the
/// silence task marks its results unknown; it comes back after.
const SILENT_FROM: usize = 25;
const SILENT_AT: usize = 33;
const SILENT_ASSET: &str = "load-00004";
/// `evaluation.unknown_after_secs`.
fn unknown_after() -> Duration {
    Duration::minutes(8)
}

/// An asset's labels.
type Labels = BTreeMap<String, String>;

/// One step of the history: its instant and its records (one batch).
struct Step {
    at: DateTime<Utc>,
    messages: Vec<Message>,
}

/// The history: the fleet's first snapshots, then its running mix with
/// full snapshots every `FULL_EVERY` steps (unchanged unless deltas came
/// between), and the scripted events.
fn history(base: DateTime<Utc>) -> Vec<Step> {
    let templates = fleet::templates().expect("fixture hosts");
    let mut fleet = fleet::Fleet::new(ASSETS, 31, &templates);
    let mut steps = Vec::new();
    for i in 0..STEPS {
        let at = base + Duration::minutes(i as i64);
        let mut messages = Vec::new();
        if i > 0 {
            messages.extend((0..8).map(|_| fleet.next()));
        }
        if i % FULL_EVERY == 0 {
            for a in 0..ASSETS {
                let mut m = fleet.snapshot(a, SnapshotKind::Full, Vec::new());
                if let Message::Snapshot(s) = &mut m {
                    if i == REMOVE_AT && a == 0 {
                        // A package uninstalled: the next full has it again.
                        let at = s.facts.iter().position(|f| f.path.starts_with("packages.version")).expect("a package");
                        s.facts.remove(at);
                    }
                    if i == RELABEL_AT && a == 1 {
                        s.asset.labels.insert("env".into(), "dr".into());
                    }
                }
                messages.push(m);
            }
        }
        if i == GAP_AT {
            // Deltas lost: every result of the asset is unknown until its
            // next full snapshot.
            let _lost = fleet.snapshot(2, SnapshotKind::Delta, Vec::new());
            messages.push(fleet.snapshot(2, SnapshotKind::Delta, Vec::new()));
        }
        if (SILENT_FROM..SILENT_AT).contains(&i) {
            messages.retain(|m| m.asset_id() != SILENT_ASSET);
        }
        // Distinct instants: "the latest" is well defined to the millisecond.
        for (k, m) in messages.iter_mut().enumerate() {
            let t = at + Duration::milliseconds(10 * k as i64 + 5);
            match m {
                Message::Snapshot(s) => s.collected_at = t,
                Message::Audit(a) => a.timestamp = t,
                Message::Sla(p) => p.timestamp = t,
            }
        }
        steps.push(Step { at, messages });
    }
    steps
}

fn waivers(at: DateTime<Utc>) -> Arc<driftwatch_collector::waiver::Waivers> {
    let spec: driftwatch_collector::waiver::WaiverSpec = serde_yaml::from_str(
        "{id: w1, control: linux.sshd.root_login_disabled, scope: {assets: [load-00003]}, justification: migration, \
         approver: ciso, risk: medium, ticket: SEC-1, expires: '2099-01-01T00:00:00Z'}",
    )
    .expect("a waiver");
    let mut w = driftwatch_collector::waiver::Waiver {
        spec,
        source: "api".into(),
        created_by: "ops".into(),
        revoked_at: None,
        revoked_by: String::new(),
    };
    w.spec.starts = Some(at);
    Arc::new(driftwatch_collector::waiver::Waivers::new(vec![w]))
}

/// The batches of one storage shape: each step evaluated as the pipeline
/// does (`Batch::add_applied_snapshot`; changes only, the engine confirms
/// an unchanged full snapshot without evaluating it), sealed into a chain, written to
/// `stores`. Returns the batches and, per unchanged full snapshot, the
/// rows it brought: one whose asset, labels and facts are those already
/// stored, and whose results were stored by this collector (the first
/// evaluation after a start stores every result again, and so does the
/// one after lost deltas, whose results were unknown).
async fn replay(steps: &[Step], compact: bool, stores: &[(&str, SharedStore)]) -> (Vec<Batch>, Vec<usize>, usize) {
    let policies = Arc::new(driftwatch_collector::policy::load_dir(&repo().join("policies")).expect("packs load"));
    let mut engine = Engine::new(policies.clone(), Duration::minutes(30)).with_unknown_after(Some(unknown_after())).confirming(compact);
    let mut chain = driftwatch_collector::evidence::Chain::new(format!("replay-{compact}"));
    // What the store holds of each asset's facts, to tell an unchanged full snapshot.
    let mut held: BTreeMap<String, (Labels, BTreeMap<String, String>)> = BTreeMap::new();
    let mut unsettled: BTreeSet<String> = BTreeSet::new();
    let (mut batches, mut unchanged_rows, mut not_evaluated) = (Vec::new(), Vec::new(), 0);
    let mut plan: Vec<(String, &Step)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if i == RESTART_AT {
            plan.push(("restart".into(), step));
            plan.push((format!("step-{}-again", i - 1), &steps[i - 1]));
        }
        plan.push((format!("step-{i}"), step));
    }
    for (id, step) in plan {
        if id == "restart" {
            let (ch_name, ch) = &stores[0];
            let posture = ch.load_posture().await.unwrap_or_else(|e| panic!("{ch_name}: posture: {e}"));
            let labels = ch.asset_labels().await.unwrap_or_else(|e| panic!("{ch_name}: labels: {e}"));
            engine = Engine::new(policies.clone(), Duration::minutes(30)).with_unknown_after(Some(unknown_after())).confirming(compact);
            engine.replace_posture(posture.into_iter().map(PostureEntry::from_stored), labels);
            unsettled.extend(held.keys().cloned());
            continue;
        }
        if id == format!("step-{SILENT_AT}") {
            // The silence task, as `tasks::silence::mark` runs it.
            let silent = stores[0].1.silent_results(step.at - unknown_after()).await.expect("silent results");
            assert!(silent.iter().all(|r| r.asset_id == SILENT_ASSET) && !silent.is_empty(), "only {SILENT_ASSET} is silent");
            let mut b = Batch { batch_id: format!("silence-{compact}"), ..Default::default() };
            b.add_evaluations(driftwatch_collector::eval::silence::unknown_results(&policies, &silent, unknown_after()), &[]);
            b.link = driftwatch_collector::evidence::Chain::new(format!("silence-{compact}")).seal(&b, step.at);
            for (name, s) in stores {
                s.write(&b).await.unwrap_or_else(|e| panic!("{name}: write silence: {e}"));
            }
            unsettled.insert(SILENT_ASSET.to_string());
        }
        let mut b = Batch { batch_id: id.clone(), ..Default::default() };
        let mut drifts = Vec::new();
        if id == format!("step-{WAIVER_AT}") {
            let applied = engine.replace_waivers(waivers(step.at), step.at);
            b.add_evaluations(applied.evaluations, &applied.transitions);
        }
        for m in &step.messages {
            let before = b.rows();
            let mut applied = match m {
                Message::Snapshot(s) => {
                    let mut applied = engine.apply_received(s, step.at);
                    not_evaluated += usize::from(applied.novelty.as_ref().is_some_and(|n| !n.confirmed.is_empty()));
                    b.add_applied_snapshot(s, &step.at, &mut applied, compact);
                    applied
                }
                Message::Audit(a) => {
                    b.add_audit(a);
                    engine.observe(m)
                }
                Message::Sla(p) => {
                    b.add_sla(p);
                    engine.observe(m)
                }
            };
            b.add_evaluations(std::mem::take(&mut applied.evaluations), &applied.transitions);
            drifts.extend(applied.drifts);
            if let Message::Snapshot(s) = m {
                let facts: BTreeMap<String, String> = s.facts.iter().map(|f| (f.path.clone(), f.value.to_json())).collect();
                let labels = s.asset.labels.clone();
                let (held_labels, asset) = held.entry(s.asset.id.clone()).or_default();
                match s.kind {
                    SnapshotKind::Full => {
                        let settled = !unsettled.remove(&s.asset.id);
                        if *asset == facts && *held_labels == labels && settled && !id.ends_with("again") {
                            unchanged_rows.push(b.rows() - before);
                        }
                        *asset = facts;
                    }
                    SnapshotKind::Delta => {
                        if engine.is_stale(&s.asset.id) {
                            unsettled.insert(s.asset.id.clone());
                        }
                        asset.extend(facts);
                        for p in &s.removed_paths {
                            asset.remove(p);
                        }
                    }
                }
                *held_labels = labels;
            }
        }
        engine.attribute(&mut drifts);
        b.add_drifts(&drifts);
        b.link = chain.seal(&b, step.at);
        for (name, s) in stores {
            s.write(&b).await.unwrap_or_else(|e| panic!("{name}: write {id}: {e}"));
        }
        batches.push(b);
    }
    (batches, unchanged_rows, not_evaluated)
}

/// Every read of results, as comparable text (batch ids left out of the
/// evaluation behind a result: it names the batch of the stored row that
/// holds the evidence, which a confirmation does not move).
async fn reads(s: &SharedStore, steps: &[Step], pairs: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    fn set<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
        let mut out: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
        out.sort();
        out
    }
    let mut out: Vec<(String, Vec<String>)> = vec![
        ("load_posture".into(), set(&s.load_posture().await.expect("posture"))),
        ("current_results".into(), set(&s.current_results().await.expect("current"))),
        ("histories".into(), set(&s.histories(steps[0].at + Duration::seconds(30), Utc::now()).await.expect("histories"))),
        ("recent_drifts".into(), set(&s.recent_drifts(None, 10_000).await.expect("drifts"))),
        ("violations".into(), set(&s.violations().await.expect("violations"))),
        ("assets".into(), set(&s.assets().await.expect("assets"))),
        ("asset_labels".into(), vec![format!("{:?}", s.asset_labels().await.expect("labels"))]),
        ("open_violations".into(), set(&s.open_violations().await.expect("open"))),
        ("silent_results".into(), set(&s.silent_results(Utc::now() + Duration::minutes(1)).await.expect("silent"))),
    ];
    // At instants: on a step's second (covering it), between steps, and
    // to the millisecond inside a step.
    let mut instants = Vec::new();
    for i in [0, 3, FULL_EVERY, REMOVE_AT, WAIVER_AT, RELABEL_AT + 1, GAP_AT, 24, RESTART_AT, SILENT_AT, STEPS - 1] {
        instants.extend([steps[i].at, steps[i].at + Duration::seconds(30), steps[i].at + Duration::milliseconds(37)]);
    }
    for t in &instants {
        out.push((format!("results_at {t}"), set(&s.results_at(*t).await.expect("results_at"))));
    }
    for t in [
        steps[FULL_EVERY].at + Duration::seconds(1),
        steps[RESTART_AT - 1].at + Duration::seconds(1),
        steps[SILENT_AT].at + Duration::seconds(1),
        Utc::now(),
    ] {
        let mut answers = Vec::new();
        for (a, c) in pairs {
            let e = s.evaluation_at(a, c, t).await.expect("evaluation_at").map(|mut e| {
                e.batch_id.clear();
                e
            });
            answers.push(format!("{e:?}"));
        }
        out.push((format!("evaluation_at {t}"), answers));
    }
    out
}

/// Rebuilds each asset's facts from changes-only rows, in order (see
/// `0017_confirmations.sql`), and checks them against every full
/// snapshot's facts digest. Returns how many digests were checked.
fn rebuilt_facts_match_the_digests(batches: &[Batch]) -> usize {
    let mut facts: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    let mut checked = 0;
    for b in batches {
        for s in &b.snapshots {
            let rows: Vec<_> = b.facts.iter().filter(|f| f.asset_id == s.asset_id && f.snapshot_id == s.snapshot_id).collect();
            let asset = facts.entry(s.asset_id.clone()).or_default();
            if s.kind == "full" && rows.len() == s.fact_count as usize {
                asset.clear();
            }
            for f in rows {
                asset.insert(f.path.clone(), (f.value_type.clone(), f.value.clone()));
            }
            let removed = b
                .confirmations
                .iter()
                .filter(|c| c.asset_id == s.asset_id && c.snapshot_id == s.snapshot_id)
                .flat_map(|c| c.removed_paths.iter())
                .chain(&s.removed_paths);
            for p in removed {
                asset.remove(p);
            }
            if !s.facts_digest.is_empty() {
                let digest = driftwatch_collector::store::rows::facts_digest(asset.iter().map(|(p, (t, v))| (p, t, v)));
                assert_eq!(digest, s.facts_digest, "{} {}: the facts rebuilt from the rows are the snapshot's", s.asset_id, s.snapshot_id);
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_storage_shapes_answer_every_read_alike() {
    services_up();
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::hours(2);
    let steps = history(base);
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    for (shape, compact) in [("every row", false), ("changes only", true)] {
        let n = Names::new();
        let ch = ClickHouseStore::connect(&ClickHouseConfig {
            url: CLICKHOUSE.into(),
            database: n.database.clone(),
            migrate: true,
            ..Default::default()
        })
        .await
        .expect("ClickHouse store");
        let lite = SqliteStore::open(&dir.path().join(format!("{compact}.db"))).expect("SQLite store");
        let stores: Vec<(&str, SharedStore)> = vec![("clickhouse", Arc::new(ch)), ("sqlite", Arc::new(lite))];
        let (batches, unchanged, not_evaluated) = replay(&steps, compact, &stores).await;
        names.push(n);
        shapes.push((shape, stores, batches, unchanged, not_evaluated));
    }

    // Rows: an unchanged full snapshot is its row and its confirmations.
    let rows = |b: &[Batch]| b.iter().map(Batch::rows).sum::<usize>();
    let (every, changes) = (&shapes[0], &shapes[1]);
    assert!(!changes.3.is_empty(), "the history has unchanged full snapshots");
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    println!(
        "unchanged full snapshots: {} of them, {:.1} rows each stored again, {:.1} rows each changes only (at most {}); \
         all rows: {} against {}",
        changes.3.len(),
        mean(&every.3),
        mean(&changes.3),
        changes.3.iter().max().unwrap(),
        rows(&every.2),
        rows(&changes.2)
    );
    assert!(mean(&every.3) > 300.0, "stored again, an unchanged full snapshot is hundreds of rows");
    assert!(changes.3.iter().all(|r| *r <= 5), "an unchanged full snapshot is at most 5 rows: {:?}", changes.3);
    assert!(rows(&changes.2) * 3 < rows(&every.2), "changes only stores far fewer rows");
    // Most unchanged full snapshots were confirmed without evaluating them.
    assert_eq!(every.4, 0, "storing every row, every snapshot is evaluated");
    assert!(changes.4 * 2 > changes.3.len(), "{} of {} confirmed without evaluation", changes.4, changes.3.len());

    // The facts can be rebuilt from the changes.
    let checked = rebuilt_facts_match_the_digests(&changes.2);
    assert!(checked >= ASSETS * (STEPS / FULL_EVERY), "every full snapshot's digest was checked ({checked})");

    // Every read answers alike, in each store.
    for k in 0..2 {
        let store = every.1[k].0;
        // The evaluation behind every result of three assets, and a
        // sample of the others.
        let mut pairs: Vec<(String, String)> =
            every.1[k].1.current_results().await.expect("current").into_iter().map(|r| (r.asset_id, r.control_id)).collect();
        pairs.sort();
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .enumerate()
            .filter(|(n, (a, _))| ["load-00000", "load-00002", SILENT_ASSET].contains(&a.as_str()) || n % 17 == 0)
            .map(|(_, p)| p)
            .collect();
        let a = reads(&every.1[k].1, &steps, &pairs).await;
        let b = reads(&changes.1[k].1, &steps, &pairs).await;
        let mut differ = Vec::new();
        for ((what, x), (_, y)) in a.iter().zip(&b) {
            assert!(!x.is_empty(), "{store}: {what} answered nothing: the history must exercise every read");
            if x != y {
                let only = |p: &[String], q: &[String]| p.iter().filter(|i| !q.contains(i)).take(3).cloned().collect::<Vec<_>>();
                differ.push(format!("{what}:\n  only stored again: {:#?}\n  only changes: {:#?}", only(x, y), only(y, x)));
            }
        }
        assert!(differ.is_empty(), "{store}: the storage shapes answer differently:\n{}", differ.join("\n"));

        // The evidence chain holds the confirmations.
        let s = &changes.1[k].1;
        let (from, to) = (base - Duration::hours(1), Utc::now() + Duration::hours(1));
        let links = s.evidence_links(from, to).await.expect("links");
        let ids: BTreeSet<String> = changes.2.iter().map(|b| b.batch_id.clone()).collect();
        let stored = s.evidence_rows(&ids, from, to).await.expect("rows");
        let v = driftwatch_collector::evidence::verify::verify(&links, &[], &stored, &[]);
        assert!(v.findings.is_empty(), "{store}: verify: {:?}", v.findings);
        assert!(stored.iter().any(|r| r.table == 8), "{store}: confirmations are chained");
    }
    for n in names {
        n.drop_database().await;
    }
}
