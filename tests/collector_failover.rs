//! Two collectors in one consumer group; one is killed with SIGKILL (no
//! goodbye to the group): the survivor takes every partition (through the
//! coordinator after the session timeout, or — where the coordinator
//! leaves them orphaned, as tansu 0.6 does when the dead member led the
//! group — by joining again once they stall), restores posture from the
//! store, and raises no false alert: a violation the dead collector paged
//! is neither paged again nor forgotten (its fix is resolved exactly once).

use std::time::Duration;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

const ASSETS: usize = 6;

/// `n` unique asset ids spread evenly over the `partitions` of a topic by
/// librdkafka's `consistent_random` partitioner (CRC-32 of the key): so the
/// dead collector's snapshots partition, whichever it is, has records
/// waiting — what tells the survivor it was orphaned. (Random ids left it
/// without any one run in eleven, and the survivor rightly waited.)
fn on_every_partition(n: usize, partitions: u32) -> Vec<String> {
    let mut per = vec![Vec::new(); partitions as usize];
    let mut i = 0;
    while per.iter().any(|p| p.len() < n / partitions as usize) {
        let id = unique(&format!("fo{i}"));
        i += 1;
        let p = &mut per[(crc32fast::hash(id.as_bytes()) % partitions) as usize];
        if p.len() < n / partitions as usize {
            p.push(id);
        }
    }
    per.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_collectors_partitions_go_to_the_survivor_without_false_alerts() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = group_collector_config(&names, work.path(), &format!("http://{addr}/hook"));
    // Each with its API (for /metrics) on a port of its own.
    let with_api = |name: &str| {
        let own = work.path().join(format!("{name}.yaml"));
        std::fs::copy(&cfg, &own).unwrap();
        (own.clone(), listen_api(&own, ""))
    };
    let ((cfg_a, port_a), (cfg_b, port_b)) = (with_api("a"), with_api("b"));
    let spawn = |name: &str, cfg: &std::path::Path| spawn_collector(work.path(), name, cfg);
    let mut a = spawn("collector-a", &cfg_a);
    wait_for("collector A to be assigned partitions", 60, async || a.log().contains("partitions assigned").then_some(())).await;
    let b = spawn("collector-b", &cfg_b);
    wait_for("both collectors to share the partitions", 60, async || {
        (strip_ansi(&a.log()).matches("partitions assigned").count() >= 2 && b.log().contains("partitions assigned")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. Every asset fails: one page each, from whichever collector owns it.
    // Keyed as the agent keys them; the partitioner named, since the assets
    // are chosen by it.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", BROKERS).set("partitioner", "consistent_random").create().unwrap();
    let assets = on_every_partition(ASSETS, 3);
    let failing = [("sshd.config.permitrootlogin", "yes")];
    let mut partitions = std::collections::BTreeMap::new();
    for asset in &assets {
        let p = produce(&producer, &names, &snapshot(asset, 1, SnapshotKind::Full, &failing)).await;
        *partitions.entry(p).or_insert(0) += 1;
    }
    assert_eq!(partitions, [(0, 2), (1, 2), (2, 2)].into(), "two assets on each snapshots partition, as chosen");
    let firing = |n: usize| {
        let receiver = receiver.clone();
        async move || (pages(&receiver) >= n).then_some(())
    };
    wait_for("a page per asset", 90, firing(ASSETS)).await;
    // Logged too: a page delivered by a collector that dies before logging
    // it is sent again by the survivor (at-least-once), which is not what
    // this test is about.
    let db = names.database.clone();
    wait_for("the pages in the notification log", 30, async || {
        (number(&format!("SELECT count() AS n FROM {db}.notification_log WHERE status = 'firing'")).await >= ASSETS as u64).then_some(())
    })
    .await;
    // Each collector reports the lag of the partitions it fetches, and
    // only those: A's revoked ones were cleared when B joined, so no
    // partition is reported twice. librdkafka's statistics come every
    // 10 s; a partition's lag is known once it has a committed offset (the
    // snapshot partitions now do). One of the two leads.
    let (ma, mb) = wait_for("the snapshot partitions' lag", 60, async || {
        let (ma, mb) = (metrics(port_a).await, metrics(port_b).await);
        let snapshots = lagging(&ma).union(&lagging(&mb)).filter(|(t, _)| *t == names.topic("snapshots")).count();
        (snapshots == 3).then_some((ma, mb))
    })
    .await;
    let both: Vec<_> = lagging(&ma).intersection(&lagging(&mb)).cloned().collect();
    assert!(both.is_empty(), "partitions reported by both collectors: {both:?}\n{ma}\n{mb}");
    let leaders = [&ma, &mb].iter().filter(|m| m.contains("\ndriftwatch_leader 1")).count();
    assert_eq!(leaders, 1, "one leader:\n{ma}\n{mb}");
    for m in [&ma, &mb] {
        assert!(m.contains("driftwatch_build_info{") && m.contains("\nprocess_resident_memory_bytes "), "{m}");
    }

    // 2. A dies without leaving the group; the assets report again (still
    //    failing). B must end up with every partition and evaluate them
    //    all without paging again.
    a.kill();
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 2, SnapshotKind::Full, &failing)).await;
    }
    wait_for("collector B to take every partition", 150, async || {
        strip_ansi(&b.log()).contains("partitions assigned partitions=9").then_some(())
    })
    .await;
    wait_evaluated(&names.database, &assets, 2).await;
    wait_for("the survivor to report every snapshot partition's lag and lead", 60, async || {
        let mb = metrics(port_b).await;
        let snapshots = lagging(&mb).iter().filter(|(t, _)| *t == names.topic("snapshots")).count();
        (snapshots == 3 && mb.contains("\ndriftwatch_leader 1")).then_some(())
    })
    .await;
    let how = if b.log().contains("joining the group again") { "joining the group again" } else { "the coordinator's rebalance" };
    eprintln!("the survivor took every partition by {how}");

    // 3. Fixed: one resolve each, from B.
    let fixed = [("sshd.config.permitrootlogin", "no")];
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 3, SnapshotKind::Full, &fixed)).await;
    }
    wait_for("a resolve per asset", 60, async || {
        let c = violation_counts(&receiver.all());
        assets.iter().all(|a| c.contains_key(&(a.clone(), "resolved".into()))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = violation_counts(&receiver.all());
    for asset in &assets {
        assert_eq!(c.get(&(asset.clone(), "firing".into())), Some(&1), "{asset}: one failure, one page: {c:?}\n{}", b.log());
        assert_eq!(c.get(&(asset.clone(), "resolved".into())), Some(&1), "{asset}: one fix, one resolve: {c:?}\n{}", b.log());
    }
    drop(b);
    names.drop_database().await;
}

/// The (topic, partition) pairs whose consumer lag `metrics` reports.
fn lagging(metrics: &str) -> std::collections::BTreeSet<(String, String)> {
    let label =
        |l: &str, name: &str| l.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_string();
    metrics.lines().filter(|l| l.starts_with("driftwatch_consumer_lag{")).map(|l| (label(l, "topic"), label(l, "partition"))).collect()
}

/// The collector's `/metrics` on `port` (empty while it does not answer).
async fn metrics(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
