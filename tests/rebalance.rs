//! Consumer-group rebalances raise no false alerts: two collectors share a
//! group; each restores posture from ClickHouse when it is assigned
//! partitions, so assets that were already failing under the other
//! collector are not re-opened, a fix is resolved exactly once, and when one
//! collector stops the survivor takes over without a second page.

use std::time::Duration;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

const ASSETS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_and_a_stopped_collector_raise_no_false_alerts() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = group_collector_config(&names, work.path(), &format!("http://{addr}/hook"));
    let spawn = |name: &str| spawn_collector(work.path(), name, &cfg);
    let mut a = spawn("collector-a");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let assets: Vec<String> = (0..ASSETS).map(|i| unique(&format!("host{i}"))).collect();
    let failing = [("sshd.config.permitrootlogin", "yes")];
    let db = names.database.clone();

    // 1. Every asset fails under collector A: one page each.
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 1, SnapshotKind::Full, &failing)).await;
    }
    let paged = |n: usize| {
        let receiver = receiver.clone();
        async move || (pages(&receiver) >= n).then_some(())
    };
    wait_for("a page per asset", 90, paged(ASSETS)).await;

    // 2. Collector B joins: partitions move. Still failing: no new page.
    let b = spawn("collector-b");
    wait_for("collector B to be assigned partitions", 60, async || b.log().contains("partitions assigned").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 2, SnapshotKind::Full, &failing)).await;
    }
    wait_evaluated(&db, &assets, 2).await;
    assert!(b.log().contains("restored posture from the store"), "{}", b.log());

    // 3. Every asset is fixed: each resolved exactly once (by whichever
    //    collector owns its partition).
    let fixed = [("sshd.config.permitrootlogin", "no")];
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 3, SnapshotKind::Full, &fixed)).await;
    }
    wait_for("a resolve per asset", 60, async || {
        let c = violation_counts(&receiver.all());
        assets.iter().all(|a| c.contains_key(&(a.clone(), "resolved".into()))).then_some(())
    })
    .await;

    // 4. Collector A stops; B takes its partitions and must know that A's
    //    assets were resolved (restored at assignment), or it would resolve
    //    them a second time.
    // A graceful stop (scale-down, rolling deploy): A leaves the group at
    // once. (A killed outright is left to the broker's session timeout; the
    // fault tests cover it.)
    assert!(a.terminate(30), "collector A did not stop on SIGTERM:\n{}", a.log());
    wait_for("collector B to take every partition", 60, async || {
        strip_ansi(&b.log()).contains("partitions assigned partitions=9").then_some(())
    })
    .await;
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 4, SnapshotKind::Full, &fixed)).await;
    }
    wait_evaluated(&db, &assets, 4).await;

    // 5. And B still pages for a real regression: one new page each.
    for asset in &assets {
        produce(&producer, &names, &snapshot(asset, 5, SnapshotKind::Full, &failing)).await;
    }
    wait_evaluated(&db, &assets, 5).await;
    wait_for("a second page per asset", 60, paged(2 * ASSETS)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let c = violation_counts(&receiver.all());
    for asset in &assets {
        assert_eq!(c.get(&(asset.clone(), "firing".into())), Some(&2), "{asset}: two real regressions, two pages: {c:?}");
        assert_eq!(c.get(&(asset.clone(), "resolved".into())), Some(&1), "{asset}: one fix, one resolve: {c:?}");
    }
    drop(b);
    names.drop_database().await;
}
