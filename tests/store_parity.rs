//! The two stores answer alike: the same batches (evaluated by the real
//! engine from real packs) and the same state writes go to ClickHouse and
//! to SQLite, and every read of the `Store` interface must return the same
//! thing from both. This is what lets `standalone` share all the code above
//! the store with the distributed mode.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use driftwatch_collector::alert::dispatch::Sent;
use driftwatch_collector::alert::matcher::Matcher;
use driftwatch_collector::alert::model::Alert;
use driftwatch_collector::alert::mute::Silence;
use driftwatch_collector::config::ClickHouseConfig;
use driftwatch_collector::eval::Engine;
use driftwatch_collector::store::clickhouse::ClickHouseStore;
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::store::rows::EvaluationRow;
use driftwatch_collector::store::sqlite::SqliteStore;
use driftwatch_collector::store::values::Status;
use driftwatch_collector::store::Batch;
use driftwatch_schemas::{Actor, AuditEvent, AuditSource, Message, Outcome, ProbeKind, SlaMeasurement, SnapshotKind};
use driftwatch_tests::*;

/// Sorted debug forms: reads whose order the interface leaves open compare
/// as sets.
fn set<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    out.sort();
    out
}

fn distinct(mut v: Vec<String>) -> Vec<String> {
    v.dedup();
    v
}

fn at_step(base: DateTime<Utc>, step: i64) -> DateTime<Utc> {
    base + Duration::minutes(step)
}

/// Moves every row of `b` to `t` (the engine stamps "now"; the scenario
/// needs distinct instants per step so "the latest" is well defined).
fn stamp(b: &mut Batch, t: DateTime<Utc>) {
    let s = t.timestamp() as u32;
    for r in &mut b.snapshots {
        r.collected_at = s;
        r.received_at = s;
    }
    for r in &mut b.facts {
        r.collected_at = s;
    }
    for r in &mut b.evaluations {
        r.evaluated_at = s;
        r.evaluated_ms = 0;
    }
    for r in &mut b.violations {
        r.at = s;
    }
    for r in &mut b.drifts {
        r.at = s;
    }
}

fn audit(asset: &str, id: &str, t: DateTime<Utc>) -> Message {
    Message::Audit(AuditEvent {
        event_id: id.into(),
        asset_id: asset.into(),
        hostname: "web-1".into(),
        source: AuditSource::Authlog,
        timestamp: t,
        actor: Actor { user: Some("alice".into()), uid: Some(1000), auid: None, groups: vec!["sudo".into()] },
        action: "sudo".into(),
        object: Some("/usr/bin/vi /etc/ssh/sshd_config".into()),
        outcome: Outcome::Success,
        source_address: None,
        raw: "raw line".into(),
        extra: Default::default(),
    })
}

fn probe(asset: &str, probe: &str, t: DateTime<Utc>, success: bool, latency_ms: i64) -> Message {
    Message::Sla(SlaMeasurement {
        asset_id: asset.into(),
        probe_id: probe.into(),
        target: "https://shop.example".into(),
        kind: if probe == "heartbeat" { ProbeKind::Host } else { ProbeKind::Http },
        timestamp: t,
        success,
        latency_us: latency_ms * 1000,
        status_code: Some(if success { 200 } else { 503 }),
        error: (!success).then(|| "503".into()),
        host_metrics: None,
        cert_days_left: Some(40),
        agent_health: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_and_sqlite_answer_every_read_alike() {
    services_up();
    let names = Names::new();
    let ch = ClickHouseStore::connect(&ClickHouseConfig {
        url: CLICKHOUSE.into(),
        database: names.database.clone(),
        migrate: true,
        ..Default::default()
    })
    .await
    .expect("ClickHouse store");
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("parity.db")).expect("SQLite store");
    let stores: [(&str, SharedStore); 2] = [("clickhouse", Arc::new(ch)), ("sqlite", Arc::new(lite))];

    // A scenario through the real engine and packs: two hosts, one drifts
    // into failure (after a sudo edit), the other is fixed, probes and a
    // heartbeat; every batch sealed into an evidence chain.
    let policies = Arc::new(driftwatch_collector::policy::load_dir(&repo().join("policies")).expect("packs load"));
    let mut engine = Engine::new(policies, Duration::minutes(30));
    let mut chain = driftwatch_collector::evidence::Chain::new("parity".into());
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::hours(3);
    let good = [("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "no"), ("sshd.config.permitemptypasswords", "no")];
    let bad = [("sshd.config.permitrootlogin", "yes"), ("sshd.config.x11forwarding", "yes"), ("sshd.config.permitemptypasswords", "no")];
    let steps: Vec<Vec<Message>> = vec![
        vec![snapshot("web-a", 1, SnapshotKind::Full, &good), snapshot("web-b", 1, SnapshotKind::Full, &bad)],
        vec![audit("web-a", "e1", at_step(base, 1)), probe("web-a", "shop", at_step(base, 1), true, 80)],
        vec![
            snapshot("web-a", 2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "yes")]),
            probe("web-a", "shop", at_step(base, 2), false, 900),
        ],
        vec![snapshot("web-b", 2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "no")])],
        vec![probe("web-a", "heartbeat", at_step(base, 4), true, 1), probe("web-b", "shop", at_step(base, 4), true, 300)],
    ];
    let mut batches = Vec::new();
    for (i, msgs) in steps.iter().enumerate() {
        let t = at_step(base, i as i64);
        let mut b = Batch::new();
        let mut drifts = Vec::new();
        for m in msgs {
            let applied = match m {
                Message::Snapshot(s) => {
                    let mut s = s.clone();
                    s.collected_at = t;
                    b.add_snapshot(&s, &t);
                    engine.apply(&s)
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
            b.add_evaluations(applied.evaluations, &applied.transitions);
            drifts.extend(applied.drifts);
        }
        engine.attribute(&mut drifts);
        b.add_drifts(&drifts);
        stamp(&mut b, t);
        b.link = chain.seal(&b, t);
        batches.push(b);
    }
    assert!(batches.iter().any(|b| !b.drifts.is_empty()) && batches.iter().any(|b| !b.violations.is_empty()), "the scenario drifts");

    let sent = |receiver: &str, group: &str, t: DateTime<Utc>, firing: &[&str]| Sent {
        receiver: receiver.into(),
        group_key: group.into(),
        at: t,
        firing: firing.iter().map(|s| s.to_string()).collect(),
        alerts: vec![],
        escalation: false,
    };
    let silence = Silence {
        id: "s1".into(),
        matchers: vec![Matcher::parse("asset=web-b").unwrap()],
        starts_at: base,
        ends_at: Utc::now() + Duration::hours(1),
        created_by: "ops".into(),
        comment: "maintenance".into(),
    };
    let waiver = |id: &str, revoked: bool| {
        let spec: driftwatch_collector::waiver::WaiverSpec = serde_yaml::from_str(&format!(
            "{{id: {id}, control: linux.sshd.root_login_disabled, scope: {{assets: [web-a]}}, justification: migration, \
             approver: ciso, risk: medium, ticket: SEC-1, expires: '2099-01-01T00:00:00Z'}}"
        ))
        .expect("a waiver");
        driftwatch_collector::waiver::Waiver {
            spec,
            source: "api".into(),
            created_by: "ops".into(),
            revoked_at: revoked.then_some(base),
            revoked_by: if revoked { "ciso".into() } else { String::new() },
        }
    };
    let waivers = [waiver("w1", false), waiver("w2", false), waiver("w2", true)];
    for (name, s) in &stores {
        for b in &batches {
            s.write(b).await.unwrap_or_else(|e| panic!("{name}: write: {e}"));
        }
        // A redelivered batch is stored once.
        s.write(&batches[2]).await.unwrap();
        s.record_notifications(&[sent("slack", "g1", at_step(base, 2), &["a"]).row("sent")]).await.unwrap();
        s.record_notifications(&[
            sent("slack", "g1", at_step(base, 3), &["a", "b"]).row("sent"),
            sent("pd", "g2", at_step(base, 3), &["c"]).row("sent"),
        ])
        .await
        .unwrap();
        s.put_silence(&silence.row(Utc::now())).await.unwrap();
        s.record_api_write("ops", "POST", "/api/v1/silences", 201, "created s1").await.unwrap();
        for w in &waivers {
            s.put_waiver(&w.row(Utc::now())).await.unwrap();
        }
        s.put_root("parity", at_step(base, 0).duration_trunc(Duration::hours(1)).unwrap(), "root".into(), 1, 5, 5).await.unwrap();
        s.refresh_sla_rollups(base, Utc::now()).await.unwrap();
    }

    // Every read, from both.
    let mut answers: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    for (name, s) in &stores {
        let mid = at_step(base, 2) + Duration::seconds(30);
        let slo: driftwatch_collector::slo::SloConfig =
            serde_yaml::from_str("service: shop\nobjective: 99.0\nsli: {kind: latency, probes: [shop], latency_ms: 500}\n")
                .expect("an SLO");
        let avail: driftwatch_collector::slo::SloConfig =
            serde_yaml::from_str("service: up\nobjective: 99.0\nsli: {kind: availability, probes: [shop, heartbeat]}\n").expect("an SLO");
        let all_batches: BTreeSet<String> = batches.iter().map(|b| b.batch_id.clone()).collect();
        let a = vec![
            ("load_posture", set(&s.load_posture().await.unwrap_or_else(|err| panic!("{name}: posture: {err}")))),
            ("current_results", set(&s.current_results().await.unwrap_or_else(|err| panic!("{name}: current: {err}")))),
            ("results_at", set(&s.results_at(mid).await.unwrap_or_else(|err| panic!("{name}: results_at: {err}")))),
            (
                "histories",
                set(&s.histories(base + Duration::seconds(30), Utc::now()).await.unwrap_or_else(|err| panic!("{name}: histories: {err}"))),
            ),
            (
                "recent_drifts",
                s.recent_drifts(None, 100)
                    .await
                    .unwrap_or_else(|err| panic!("{name}: drifts: {err}"))
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect(),
            ),
            (
                "recent_drifts_a",
                s.recent_drifts(Some("web-a"), 1)
                    .await
                    .unwrap_or_else(|err| panic!("{name}: drifts: {err}"))
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect(),
            ),
            (
                "violations",
                s.violations().await.unwrap_or_else(|err| panic!("{name}: violations: {err}")).iter().map(|d| format!("{d:?}")).collect(),
            ),
            ("assets", s.assets().await.unwrap_or_else(|err| panic!("{name}: assets: {err}")).iter().map(|d| format!("{d:?}")).collect()),
            ("audit_event", vec![format!("{:?}", s.audit_event("web-a", "e1").await.unwrap_or_else(|err| panic!("{name}: audit: {err}")))]),
            (
                "evaluation_at",
                vec![format!(
                    "{:?}",
                    s.evaluation_at("web-a", "linux.sshd.root_login_disabled", mid)
                        .await
                        .unwrap_or_else(|err| panic!("{name}: eval_at: {err}"))
                )],
            ),
            ("notification_log", set(&sents(s.notification_log().await.unwrap_or_else(|err| panic!("{name}: log: {err}"))))),
            (
                "notification_log_for",
                set(&sents(s.notification_log_for(&["g1".into()]).await.unwrap_or_else(|err| panic!("{name}: log for: {err}")))),
            ),
            ("silences", set(&Silence::from_rows(s.silences().await.unwrap_or_else(|err| panic!("{name}: silences: {err}"))))),
            (
                "open_violation_alerts",
                set(&s
                    .open_violations()
                    .await
                    .unwrap_or_else(|err| panic!("{name}: open: {err}"))
                    .into_iter()
                    .map(Alert::reopened)
                    .collect::<Vec<_>>()),
            ),
            (
                "waivers",
                driftwatch_collector::waiver::Waiver::from_rows(s.waivers().await.unwrap_or_else(|err| panic!("{name}: waivers: {err}")))
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect(),
            ),
            ("asset_labels", vec![format!("{:?}", s.asset_labels().await.unwrap_or_else(|err| panic!("{name}: labels: {err}")))]),
            (
                "silent_results",
                set(&s.silent_results(Utc::now() + Duration::minutes(1)).await.unwrap_or_else(|err| panic!("{name}: silent: {err}"))),
            ),
            (
                "slo_minutes latency",
                set(&s.slo_minutes(&slo.sli.probes, slo.latency_ms(), base).await.unwrap_or_else(|err| panic!("{name}: slo: {err}"))),
            ),
            (
                "slo_minutes availability",
                set(&s.slo_minutes(&avail.sli.probes, avail.latency_ms(), base).await.unwrap_or_else(|err| panic!("{name}: slo: {err}"))),
            ),
            ("probes_last_seen", set(&s.probes_last_seen(&["shop".into()]).await.unwrap_or_else(|err| panic!("{name}: probes: {err}")))),
            ("assets_last_seen", set(&s.assets_last_seen().await.unwrap_or_else(|err| panic!("{name}: seen: {err}")))),
            (
                "evidence_links",
                set(&s.evidence_links(base - Duration::hours(1), Utc::now()).await.unwrap_or_else(|err| panic!("{name}: links: {err}"))),
            ),
            (
                "evidence_heads",
                set(&s
                    .evidence_heads(None, base - Duration::hours(1), Utc::now())
                    .await
                    .unwrap_or_else(|err| panic!("{name}: heads: {err}"))),
            ),
            (
                "evidence_roots",
                set(&s.evidence_roots(base - Duration::hours(2), Utc::now()).await.unwrap_or_else(|err| panic!("{name}: roots: {err}"))),
            ),
            // As sets: ClickHouse returns a redelivered row twice until its
            // parts merge (the verifier reads rows as a set).
            (
                "evidence_rows",
                distinct(set(&s
                    .evidence_rows(&all_batches, base - Duration::hours(1), Utc::now())
                    .await
                    .unwrap_or_else(|err| panic!("{name}: rows: {err}")))),
            ),
        ];
        answers.push(a.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    }
    let (ch, lite) = (&answers[0], &answers[1]);
    let mut differ = Vec::new();
    for ((what, a), (_, b)) in ch.iter().zip(lite) {
        assert!(!a.is_empty(), "{what}: ClickHouse answered nothing (the scenario must exercise every read)");
        if a != b {
            let only = |x: &[String], y: &[String]| x.iter().filter(|i| !y.contains(i)).take(3).cloned().collect::<Vec<_>>();
            differ.push(format!(
                "{what} ({} vs {} items):\n  only in clickhouse: {:#?}\n  only in sqlite: {:#?}",
                a.len(),
                b.len(),
                only(a, b),
                only(b, a)
            ));
        }
    }
    assert!(differ.is_empty(), "the stores disagree:\n{}", differ.join("\n"));

    // The latest result is the latest to the millisecond: a delta evaluated
    // in the same second as the full snapshot before it wins, whichever
    // row the store receives first.
    let second = at_step(base, 6).timestamp() as u32;
    let proto = batches[0].evaluations[0].clone();
    for (name, s) in &stores {
        for (ms, status) in [(900, "pass"), (100, "fail")] {
            let mut b = Batch::new();
            b.evaluations.push(EvaluationRow {
                asset_id: "ms-host".into(),
                control_id: "ms.control".into(),
                status: status.into(),
                evaluated_at: second,
                evaluated_ms: ms,
                snapshot_id: format!("ms-{ms}"),
                batch_id: b.batch_id.clone(),
                ..proto.clone()
            });
            s.write(&b).await.unwrap_or_else(|e| panic!("{name}: write: {e}"));
        }
        let current = s.current_results().await.unwrap_or_else(|e| panic!("{name}: current: {e}"));
        let latest = current.iter().find(|r| r.asset_id == "ms-host").unwrap_or_else(|| panic!("{name}: no result for ms-host"));
        assert_eq!(latest.status, Status::Pass, "{name}: the result 800 ms later in the same second is the latest");
        let posture = s.load_posture().await.unwrap_or_else(|e| panic!("{name}: posture: {e}"));
        let restored = posture.iter().find(|p| p.asset_id == "ms-host").unwrap_or_else(|| panic!("{name}: no posture for ms-host"));
        assert_eq!(restored.status, Status::Pass, "{name}: posture restores the latest to the millisecond");
    }
    // Attestations and their files: written alike (a file twice, stored
    // once), read back alike, oldest first.
    let mut answers = Vec::new();
    for (name, s) in &stores {
        use driftwatch_collector::store::attestations::{AttestationFileRow, AttestationRow};
        let file = |sha: &str, content: &str| AttestationFileRow {
            sha256: sha.into(),
            content_type: "text/plain".into(),
            size: 3,
            content: content.into(),
            stored_at: 1_700_000_000,
        };
        let row = |id: &str, at: u32, files: &[&str]| AttestationRow {
            attestation_id: id.into(),
            control_id: "org.review".into(),
            status: "pass".into(),
            statement: "reviewed".into(),
            attested_by: "alice".into(),
            attested_at: at,
            source: "cli".into(),
            file_names: files.iter().map(|f| format!("{f}.txt")).collect(),
            file_sha256: files.iter().map(|f| f.to_string()).collect(),
            file_sizes: files.iter().map(|_| 3).collect(),
            file_types: files.iter().map(|_| "text/plain".to_string()).collect(),
        };
        s.put_attestation(&row("b", 1_700_000_100, &["aa", "bb"]), &[file("aa", "YWFh"), file("bb", "YmJi")]).await.unwrap();
        s.put_attestation(&row("a", 1_700_000_000, &["aa"]), &[file("aa", "YWFh")]).await.unwrap();
        let all = s.attestations().await.unwrap_or_else(|e| panic!("{name}: attestations: {e}"));
        assert_eq!(all.iter().map(|a| a.attestation_id.as_str()).collect::<Vec<_>>(), ["a", "b"], "{name}: oldest first");
        let f = s.attestation_file("bb").await.unwrap();
        assert_eq!(s.attestation_file("cc").await.unwrap(), None, "{name}");
        answers.push((all, f));
    }
    assert_eq!(answers[0], answers[1], "ClickHouse and SQLite answer attestations alike");
    names.drop_database().await;
}

/// The sends of notification-log rows (what the log means; a row's status
/// is not read back).
fn sents(rows: Vec<driftwatch_collector::store::records::NotificationRow>) -> Vec<Sent> {
    rows.into_iter().map(Sent::from_row).collect()
}
