//! Migrations against the real ClickHouse: a migration interrupted
//! half-way (here: the record of what was applied lost) is applied again
//! and completes, and two collectors migrating a new database at once both
//! succeed (`ADD COLUMN` has no `IF NOT EXISTS` on 18.16).

use driftwatch_collector::store::clickhouse::ClickHouseStore;
use driftwatch_collector::store::config::ClickHouseConfig;
use driftwatch_tests::*;

fn config(database: &str) -> ClickHouseConfig {
    ClickHouseConfig { url: CLICKHOUSE.into(), database: database.into(), migrate: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_complete_after_an_interruption_and_side_by_side() {
    services_up();
    let names = Names::new();
    let db = names.database.clone();
    let migrations = driftwatch_schemas::clickhouse::MIGRATIONS.len() as u64;

    // Two at once on a new database.
    let cfg = config(&db);
    let (a, b) = tokio::join!(ClickHouseStore::connect(&cfg), ClickHouseStore::connect(&cfg));
    a.expect("the first collector migrates");
    b.expect("the second collector migrates beside it");
    let applied = number(&format!("SELECT uniqExact(version) AS n FROM {db}.schema_migrations")).await;
    assert_eq!(applied, migrations);

    // The record lost: every migration runs again over what is there.
    exec(&format!("DROP TABLE {db}.schema_migrations")).await;
    ClickHouseStore::connect(&config(&db)).await.expect("migrating again over an applied schema");
    assert_eq!(number(&format!("SELECT uniqExact(version) AS n FROM {db}.schema_migrations")).await, migrations);
    names.drop_database().await;
}

/// `clickhouse.query_timeout_secs`: ClickHouse stops a query of the
/// collector's that runs longer (here a scan of ten billion numbers, given
/// one second), with its timeout named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_timeout_is_stopped_by_clickhouse() {
    services_up();
    let names = Names::new();
    let cfg = ClickHouseConfig { query_timeout_secs: 1, ..config(&names.database) };
    let store = ClickHouseStore::connect(&cfg).await.unwrap();
    let started = std::time::Instant::now();
    let e = store
        .client()
        .query("SELECT count() FROM system.numbers_mt WHERE NOT ignore(number) AND number < 10000000000")
        .fetch_one::<u64>()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Timeout exceeded") || e.to_string().contains("TIMEOUT_EXCEEDED"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "stopped near its second: {:?}", started.elapsed());
    names.drop_database().await;
}
