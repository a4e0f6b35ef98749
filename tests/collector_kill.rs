//! The collector killed with SIGKILL in the middle of a backlog, then
//! started again: no event lost, none stored twice, and no alert missing or
//! sent twice — the violations notified before the kill are not notified
//! again (the notification log and the stored posture are read back), and
//! they resolve, once, when fixed afterwards.

use std::process::Command;

use driftwatch_schemas::{Message, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::Value;

const CONTROL: &str = "linux.sshd.root_login_disabled";
const ASSETS: usize = 40;
const EVENTS: usize = 20_000;

fn control_alerts(receiver: &Receiver, status: &str) -> Vec<Value> {
    notified_alerts(&receiver.all())
        .into_iter()
        .filter(|a| a["alertname"] == "violation" && a["control_id"] == CONTROL && a["status"] == status)
        .collect()
}

/// A collector of the test's own (topics, group, database) paging a local
/// webhook, and a producer.
struct Setup {
    work: tempfile::TempDir,
    receiver: Receiver,
    names: Names,
    cfg: std::path::PathBuf,
    producer: FutureProducer,
}

impl Setup {
    async fn new() -> Setup {
        services_up();
        let work = tempfile::tempdir().unwrap();
        let (receiver, addr) = Receiver::start().await;
        let names = Names::new();
        let cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
        short_session(&cfg);
        create_topics(&cfg);
        let producer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
        Setup { work, receiver, names, cfg, producer }
    }

    fn start(&self) -> Proc {
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&self.cfg), self.work.path())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_loses_doubles_and_repeats_nothing() {
    let setup = Setup::new().await;
    let Setup { receiver, names, producer, .. } = &setup;
    let start = || setup.start();
    let mut collector = start();
    let assets: Vec<String> = (0..ASSETS).map(|i| format!("{}-{i:02}", unique("kill"))).collect();
    let db = names.database.clone();

    // 1. Every asset allows root logins: one violation each, notified and logged.
    for a in &assets {
        produce(producer, names, &snapshot(a, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    }
    wait_for("a page per asset", 90, async || (control_alerts(receiver, "firing").len() >= ASSETS).then_some(())).await;
    wait_for("the pages in the notification log", 30, async || {
        (number(&format!("SELECT count() AS n FROM {db}.notification_log WHERE status = 'firing'")).await >= ASSETS as u64).then_some(())
    })
    .await;

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(control_alerts(receiver, "firing").len(), ASSETS, "one page per asset before the kill");

    // 2. A backlog of logins; SIGKILL while it is being stored.
    let backlog: Vec<Message> = (0..EVENTS).map(|i| ssh_login(&assets[i % ASSETS], i, "web-1", "deploy")).collect();
    produce_all(producer, names, &backlog).await;
    let stored = || format!("SELECT count() AS n FROM {db}.audit_events FINAL");
    let at_kill = wait_for("part of the backlog stored", 120, async || {
        let n = number(&stored()).await;
        (n > 0 && n < EVENTS as u64 / 2).then_some(n)
    })
    .await;
    collector.kill();
    let mut collector = start();
    wait_for("the whole backlog stored", 180, async || (number(&stored()).await == EVENTS as u64).then_some(())).await;

    // 3. Half the assets are fixed: each resolves, once. A full snapshot
    // (as agents send hourly and at their start): the restarted collector
    // holds no facts, and a delta naming only PermitRootLogin cannot show
    // that no Match block allows root login (posture does not resolve on a
    // partial view).
    for a in &assets[..ASSETS / 2] {
        produce(producer, names, &snapshot(a, 2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")])).await;
    }
    wait_for("the resolves", 90, async || (control_alerts(receiver, "resolved").len() >= ASSETS / 2).then_some(())).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    exec(&format!("OPTIMIZE TABLE {db}.audit_events FINAL")).await;
    let rows = query(&format!("SELECT count() AS n, uniqExact(event_id) AS u FROM {db}.audit_events")).await;
    assert_eq!((count(&rows[0]["n"]), count(&rows[0]["u"])), (EVENTS as u64, EVENTS as u64), "killed at {at_kill}: each event stored once");
    let opened =
        number(&format!("SELECT uniqExact(violation_id) AS n FROM {db}.violations WHERE event = 'opened' AND control_id = '{CONTROL}'"))
            .await;
    assert_eq!(opened, ASSETS as u64, "one violation per asset, not re-opened by the restart");
    for (status, want) in [("firing", ASSETS), ("resolved", ASSETS / 2)] {
        let alerts = control_alerts(receiver, status);
        let per_asset = |a: &str| alerts.iter().filter(|x| x["asset_id"] == a).count();
        let wrong: Vec<(&String, usize)> = assets
            .iter()
            .enumerate()
            .map(|(i, a)| (a, per_asset(a), usize::from(status == "firing" || i < ASSETS / 2)))
            .filter(|(_, got, want)| got != want)
            .map(|(a, got, _)| (a, got))
            .collect();
        assert!(wrong.is_empty(), "{status}: {want} alerts, one per asset; these differ: {wrong:?}");
    }
    assert!(collector.terminate(30));
    names.drop_database().await;
}

/// A page goes out as soon as its snapshot is evaluated, before its batch
/// is stored; its entry in the notification log waits for the batch. Killed
/// in between (here the batch cannot be stored: its asset's `snapshots`
/// table is detached), the restart neither resolves the violation (a log
/// naming a page whose violation the store lacks would) nor loses it: the
/// redelivered snapshot opens it and pages again (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sent_before_its_batch_was_stored_survives_a_kill() {
    let setup = Setup::new().await;
    let Setup { receiver, names, producer, .. } = &setup;
    let start = || setup.start();
    let mut collector = start();
    let asset = unique("unstored");
    let db = names.database.clone();
    let pages = |status: &str| control_alerts(receiver, status).into_iter().filter(|a| a["asset_id"] == asset.as_str()).count();

    // 1. A compliant asset, stored.
    produce(producer, names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")])).await;
    wait_evaluated(&db, std::slice::from_ref(&asset), 1).await;

    // 2. Root logins allowed, in a batch that cannot be stored: paged anyway.
    exec(&format!("DETACH TABLE {db}.snapshots")).await;
    produce(producer, names, &snapshot(&asset, 2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    wait_for("the page, before its batch is stored", 90, async || (pages("firing") == 1).then_some(())).await;
    // The log writer writes within 200 ms of a delivery; give it ten times that.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let logged = format!("SELECT count() AS n FROM {db}.notification_log WHERE position(alerts, '{asset}') > 0");
    assert_eq!(number(&logged).await, 0, "not logged while its batch is not stored");
    assert!(strip_ansi(&collector.log()).contains("store write failed"), "the batch was not stored:\n{}", collector.log());

    // 3. Killed; the table is back; restarted.
    collector.kill();
    exec(&format!("ATTACH TABLE {db}.snapshots")).await;
    let mut collector = start();
    let opened = format!("SELECT count() AS n FROM {db}.violations WHERE event = 'opened' AND asset_id = '{asset}'");
    wait_for("the violation stored, open", 120, async || (number(&opened).await >= 1).then_some(())).await;
    wait_for("the page sent again (at least once)", 60, async || (pages("firing") == 2).then_some(())).await;
    wait_for("the page logged", 30, async || (number(&logged).await >= 1).then_some(())).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(pages("resolved"), 0, "the restart did not take the page for a violation closed meanwhile");
    assert_eq!(pages("firing"), 2);
    assert!(collector.terminate(30));
    names.drop_database().await;
}
