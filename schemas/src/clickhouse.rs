//! ClickHouse DDL migrations, numbered and compiled in. The collector's
//! migration runner applies the ones not yet recorded in
//! `schema_migrations`, in order. Statements are separated by `;` at the end
//! of a line, because ClickHouse's HTTP interface takes one statement per
//! request.

/// One numbered migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_streams", sql: include_str!("../clickhouse/0001_streams.sql") },
    Migration { version: 2, name: "0002_evaluations", sql: include_str!("../clickhouse/0002_evaluations.sql") },
    Migration { version: 3, name: "0003_drift", sql: include_str!("../clickhouse/0003_drift.sql") },
    Migration { version: 4, name: "0004_alerting", sql: include_str!("../clickhouse/0004_alerting.sql") },
    Migration { version: 5, name: "0005_slo", sql: include_str!("../clickhouse/0005_slo.sql") },
    Migration { version: 6, name: "0006_scores", sql: include_str!("../clickhouse/0006_scores.sql") },
    Migration { version: 7, name: "0007_api_audit", sql: include_str!("../clickhouse/0007_api_audit.sql") },
    Migration { version: 8, name: "0008_waivers", sql: include_str!("../clickhouse/0008_waivers.sql") },
    Migration { version: 9, name: "0009_evidence", sql: include_str!("../clickhouse/0009_evidence.sql") },
    Migration { version: 10, name: "0010_agent_health", sql: include_str!("../clickhouse/0010_agent_health.sql") },
    Migration { version: 11, name: "0011_latest_evaluations", sql: include_str!("../clickhouse/0011_latest_evaluations.sql") },
    Migration { version: 12, name: "0012_controls", sql: include_str!("../clickhouse/0012_controls.sql") },
    Migration { version: 13, name: "0013_asset_keys", sql: include_str!("../clickhouse/0013_asset_keys.sql") },
    Migration { version: 14, name: "0014_score_coverage", sql: include_str!("../clickhouse/0014_score_coverage.sql") },
    Migration { version: 15, name: "0015_attestations", sql: include_str!("../clickhouse/0015_attestations.sql") },
    Migration { version: 16, name: "0016_gap_tracking", sql: include_str!("../clickhouse/0016_gap_tracking.sql") },
    Migration { version: 17, name: "0017_confirmations", sql: include_str!("../clickhouse/0017_confirmations.sql") },
];

/// Latest posture per (asset, control) with its open violation.
pub const LATEST_POSTURE_SQL: &str = include_str!("../clickhouse/queries/latest_posture.sql");

/// Latest result per (asset, control) with labels and violation age.
pub const CURRENT_RESULTS_SQL: &str = include_str!("../clickhouse/queries/current_results.sql");
/// Results with labels as of an instant (`?` seconds, seconds, milliseconds, seconds).
pub const RESULTS_AT_SQL: &str = include_str!("../clickhouse/queries/results_at.sql");
/// Status per (asset, control) at an instant (`?` = seconds).
pub const STATUS_AT_SQL: &str = include_str!("../clickhouse/queries/status_at.sql");
/// Evaluations in (from, to] in order (`?`, `?` = seconds).
pub const STATUS_HISTORY_SQL: &str = include_str!("../clickhouse/queries/status_history.sql");

/// The last notification per (receiver, group) of the past 30 days.
pub const NOTIFICATION_LOG_SQL: &str = include_str!("../clickhouse/queries/notification_log.sql");
/// The last notification of given groups (`?` group keys).
pub const NOTIFICATION_LOG_GROUPS_SQL: &str = include_str!("../clickhouse/queries/notification_log_groups.sql");
/// Silences not yet ended, latest version each.
pub const SILENCES_SQL: &str = include_str!("../clickhouse/queries/silences.sql");
/// Open violations with their alert details and asset labels.
pub const OPEN_VIOLATIONS_SQL: &str = include_str!("../clickhouse/queries/open_violations.sql");

/// Recomputes minute rollups (`?` version, from, to).
pub const SLA_ROLLUP_SQL: &str = include_str!("../clickhouse/queries/sla_rollup.sql");
/// Per-minute totals of probes since an instant (`?` probe ids, from).
pub const SLO_MINUTES_SQL: &str = include_str!("../clickhouse/queries/slo_minutes.sql");
/// Last minute each probe reported (`?` probe ids).
pub const PROBE_LAST_SEEN_SQL: &str = include_str!("../clickhouse/queries/probe_last_seen.sql");
/// The latest drift events, of one asset or all (`?` asset twice, limit).
pub const RECENT_DRIFT_SQL: &str = include_str!("../clickhouse/queries/recent_drift.sql");
/// Chain links stored in a period (`?` from, to).
pub const EVIDENCE_LINKS_SQL: &str = include_str!("../clickhouse/queries/evidence_links.sql");
/// Chain links of given batches (`?` batch ids).
pub const EVIDENCE_LINKS_FOR_SQL: &str = include_str!("../clickhouse/queries/evidence_links_for.sql");
/// Per chain, the head of a period (`?` chain or '', chain, from, to).
pub const EVIDENCE_HEADS_SQL: &str = include_str!("../clickhouse/queries/evidence_heads.sql");
/// Hourly Merkle roots of a period (`?` from, to).
pub const EVIDENCE_ROOTS_SQL: &str = include_str!("../clickhouse/queries/evidence_roots.sql");
/// Every violation with its lifecycle and asset labels.
pub const VIOLATIONS_SQL: &str = include_str!("../clickhouse/queries/violations.sql");
/// Every asset with its last snapshot and heartbeat.
pub const ASSETS_SQL: &str = include_str!("../clickhouse/queries/assets.sql");
/// The evaluation behind a result (`?` asset, control, instant).
pub const EVALUATION_AT_SQL: &str = include_str!("../clickhouse/queries/evaluation_at.sql");
/// Every attestation, oldest first.
pub const ATTESTATIONS_SQL: &str = include_str!("../clickhouse/queries/attestations.sql");
/// One attestation evidence file (`?` SHA-256).
pub const ATTESTATION_FILE_SQL: &str = include_str!("../clickhouse/queries/attestation_file.sql");
/// Every change of every gap's tracking, in order.
pub const GAP_EVENTS_SQL: &str = include_str!("../clickhouse/queries/gap_events.sql");
/// Every waiver, latest version each.
pub const WAIVERS_SQL: &str = include_str!("../clickhouse/queries/waivers.sql");
/// Latest results of assets silent since an instant (`?`, `?` = seconds).
pub const SILENT_RESULTS_SQL: &str = include_str!("../clickhouse/queries/silent_results.sql");
/// The latest labels of every asset seen in the past week.
pub const ASSET_LABELS_SQL: &str = include_str!("../clickhouse/queries/asset_labels.sql");
/// Agents' keys per asset, latest version each (`?` asset or '', twice).
pub const ASSET_KEYS_SQL: &str = include_str!("../clickhouse/queries/asset_keys.sql");
/// Last time each asset sent anything.
pub const ASSET_LAST_SEEN_SQL: &str = include_str!("../clickhouse/queries/asset_last_seen.sql");

/// The table that records applied migrations (created before any migration).
pub const MIGRATIONS_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
    version UInt32, name String, checksum String, applied_at DateTime) \
    ENGINE = MergeTree() ORDER BY version";

/// The schema of every migration for a ClickHouse cluster, as a file to
/// apply by hand (`clickhouse-client --multiquery`): the database on every
/// node, then each migration in its cluster form
/// ([`Migration::cluster_statements`]) followed by its row in
/// `schema_migrations`, so that a collector started later with
/// `clickhouse.migrate: true` knows what the cluster has.
pub fn cluster_ddl(cluster: &str, database: &str) -> Result<String, String> {
    check_identifier("cluster", cluster, "_-.")?;
    check_identifier("database", database, "_")?;
    let mut out = format!(
        "-- Driftwatch schema for the database '{database}' on the ClickHouse cluster '{cluster}';\n\
         -- generated by `driftwatch-collector schema --cluster {cluster} --database {database}`.\n\n\
         {};\n",
        create_database_on_cluster(cluster, database)
    );
    out.push_str("\n-- applied migrations\n");
    for stmt in cluster_migrations_table(cluster, database)? {
        out.push_str(&format!("{stmt};\n"));
    }
    for m in MIGRATIONS {
        out.push_str(&format!("\n-- {}\n", m.name));
        for stmt in m.cluster_statements(cluster, database)? {
            out.push_str(&format!("{stmt};\n"));
        }
        out.push_str(&format!(
            "INSERT INTO `{database}`.schema_migrations (version, name, checksum, applied_at) VALUES ({}, '{}', '{}', now());\n",
            m.version,
            m.name,
            m.checksum()
        ));
    }
    Ok(out)
}

/// `CREATE DATABASE … ON CLUSTER`, the first statement on a new cluster.
pub fn create_database_on_cluster(cluster: &str, database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS `{database}` ON CLUSTER '{cluster}'")
}

/// Refuses a name that would need quoting inside the generated DDL:
/// `extra` are the characters allowed beside ASCII letters and digits.
pub fn check_identifier(what: &str, name: &str, extra: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c)) {
        let extra: Vec<String> = extra.chars().map(|c| format!("'{c}'")).collect();
        return Err(format!("{what} {name:?}: only letters, digits and {} may be used", extra.join(", ")));
    }
    Ok(())
}

/// One statement of a migration in its cluster form. Every name is
/// qualified with `database`: a statement `ON CLUSTER` runs on each node in
/// that node's default database, so an unqualified `AS`, `TO` or `FROM`
/// would name another database's table (or none).
///
/// - `CREATE TABLE t … ENGINE = XMergeTree(…)` becomes `t_local`, a
///   `ReplicatedXMergeTree` on every node (its ZooKeeper path and replica
///   from the `{shard}`, `{database}`, `{table}` and `{replica}` macros),
///   and `t`, a Distributed table over them, sharded by
///   `cityHash64(asset_id)` where the table has an asset (so an asset's
///   rows, their deduplication and its posture stay on one shard), by
///   `rand()` otherwise.
/// - `ALTER TABLE t ADD COLUMN …` applies to `t_local`; `t` is dropped
///   and made again over it, sharded as before.
/// - `CREATE MATERIALIZED VIEW v TO t AS SELECT … FROM s` becomes `v_local`
///   on every node, from `s_local` to `t_local`: it sees the inserts that
///   land on its node.
/// - `INSERT INTO t SELECT … FROM s` (a backfill) runs once, on the node
///   it is sent to, through the Distributed tables.
fn cluster_statements(migration: &str, stmt: &str, cluster: &str, db: &str) -> Result<Vec<String>, String> {
    let on = format!("ON CLUSTER '{cluster}'");
    if let Some(rest) = stmt.strip_prefix("ALTER TABLE ") {
        let (name, change) = rest.split_once(' ').ok_or_else(|| format!("{migration}: ALTER without a table"))?;
        if !change.trim_start().starts_with("ADD COLUMN") {
            return Err(format!("{migration}: only ALTER TABLE … ADD COLUMN can be clustered: {stmt}"));
        }
        // A Distributed table holds no rows: it is made again over the
        // changed `_local` one (ClickHouse refuses `ALTER … ON CLUSTER` of a
        // table that is not replicated on a cluster whose shards are).
        return Ok(vec![
            format!("ALTER TABLE `{db}`.{name}_local {on} {change}"),
            format!("DROP TABLE IF EXISTS `{db}`.{name} {on}"),
            distributed(name, shard_key(name), cluster, db),
        ]);
    }
    if let Some(rest) = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
        let mut words = rest.split_whitespace();
        let (name, to, target) = (words.next().unwrap_or_default(), words.next(), words.next().unwrap_or_default());
        let (Some("TO"), Some((_, select))) = (to, rest.split_once(" AS\n").or_else(|| rest.split_once(" AS "))) else {
            return Err(format!("{migration}: {name}: only a materialized view `TO` a table can be clustered"));
        };
        let (before, after) = select.split_once("\nFROM ").ok_or_else(|| format!("{migration}: {name}: no FROM on a line"))?;
        let (source, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        return Ok(vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.{name}_local {on} TO `{db}`.{target}_local AS\n{before}\nFROM `{db}`.{source}_local {tail}"
        )]);
    }
    if let Some(rest) = stmt.strip_prefix("INSERT INTO ") {
        let (name, select) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (before, after) = select.split_once("\nFROM ").ok_or_else(|| format!("{migration}: INSERT INTO {name}: no FROM on a line"))?;
        let (source, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        return Ok(vec![format!("INSERT INTO `{db}`.{name}\n{}\nFROM `{db}`.{source} {tail}", before.trim_start())]);
    }
    let rest = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ").ok_or_else(|| {
        format!(
            "{migration}: only CREATE TABLE, CREATE MATERIALIZED VIEW … TO, INSERT INTO … SELECT and ALTER TABLE … ADD COLUMN statements can be clustered: {}",
            stmt.lines().next().unwrap_or_default()
        )
    })?;
    let (name, rest) = rest.split_once(' ').ok_or_else(|| format!("{migration}: no table name"))?;
    let at = rest.find(") ENGINE = ").ok_or_else(|| format!("{migration}: {name}: no ENGINE"))?;
    let (columns, tail) = (&rest[..=at], &rest[at + ") ENGINE = ".len()..]);
    let open = tail.find('(').ok_or_else(|| format!("{migration}: {name}: engine without arguments"))?;
    let close = tail.find(')').ok_or_else(|| format!("{migration}: {name}: engine without arguments"))?;
    let (engine, args, after) = (&tail[..open], &tail[open + 1..close], &tail[close + 1..]);
    if !engine.ends_with("MergeTree") {
        return Err(format!("{migration}: {name}: engine {engine} is not a MergeTree"));
    }
    let args = if args.trim().is_empty() { String::new() } else { format!(", {args}") };
    Ok(vec![
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.{name}_local {on} {columns} ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}'{args}){after}"
        ),
        distributed(name, shard_key_of(columns), cluster, db),
    ])
}

/// The Distributed table `name` over `name_local` on every node.
fn distributed(name: &str, key: &str, cluster: &str, db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{db}`.{name} ON CLUSTER '{cluster}' AS `{db}`.{name}_local ENGINE = Distributed('{cluster}', '{db}', {name}_local, {key})"
    )
}

/// How a table with these columns is sharded: by asset where it has one.
fn shard_key_of(columns: &str) -> &'static str {
    if columns.contains("asset_id String") {
        "cityHash64(asset_id)"
    } else {
        "rand()"
    }
}

/// How the table `name`, as its migration created it, is sharded.
fn shard_key(name: &str) -> &'static str {
    let create = format!("CREATE TABLE IF NOT EXISTS {name} (");
    MIGRATIONS.iter().flat_map(|m| m.statements()).find(|s| s.starts_with(&create)).map_or("rand()", |s| shard_key_of(&s))
}

/// `schema_migrations` in its cluster form: a replicated table on every
/// node and a Distributed one over them, so that every node reads the
/// versions any collector recorded.
pub fn cluster_migrations_table(cluster: &str, database: &str) -> Result<Vec<String>, String> {
    cluster_statements("schema_migrations", MIGRATIONS_TABLE_DDL, cluster, database)
}

impl Migration {
    /// The statements of this migration in their cluster form (see
    /// [`cluster_ddl`]), for the cluster `cluster` and the database
    /// `database`.
    pub fn cluster_statements(&self, cluster: &str, database: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for stmt in self.statements() {
            out.extend(cluster_statements(self.name, &stmt, cluster, database)?);
        }
        Ok(out)
    }

    /// The statements of this migration, comments stripped.
    pub fn statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        for line in self.sql.lines() {
            let line = match line.find("--") {
                Some(i) => &line[..i],
                None => line,
            };
            if line.trim().is_empty() {
                continue;
            }
            current.push_str(line);
            current.push('\n');
            if line.trim_end().ends_with(';') {
                let stmt = current.trim().trim_end_matches(';').trim().to_string();
                out.push(stmt);
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        out
    }

    /// A stable checksum of the file (FNV-1a, hex), recorded so that an
    /// edited, already-applied migration is detected.
    pub fn checksum(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.sql.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_split() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            let stmts = m.statements();
            assert!(!stmts.is_empty());
            for s in stmts {
                assert!(
                    ["CREATE TABLE IF NOT EXISTS", "ALTER TABLE ", "CREATE MATERIALIZED VIEW IF NOT EXISTS ", "INSERT INTO "]
                        .iter()
                        .any(|k| s.starts_with(k)),
                    "{s}"
                );
                assert!(!s.contains(';'));
            }
        }
    }

    #[test]
    fn ddl_avoids_features_old_servers_lack() {
        for m in MIGRATIONS {
            let code = m.statements().join("\n");
            for banned in ["DateTime64", "TTL", "Map(", "toStartOfInterval", "LowCardinality"] {
                assert!(!code.contains(banned), "{} uses {banned}", m.name);
            }
        }
    }

    #[test]
    fn every_table_has_a_replicated_local_and_a_distributed_twin() {
        let ddl = super::cluster_ddl("dw", "db").unwrap();
        for m in super::MIGRATIONS {
            for stmt in m.statements() {
                if let Some(view) = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
                    let name = view.split_whitespace().next().unwrap();
                    assert!(
                        ddl.contains(&format!("CREATE MATERIALIZED VIEW IF NOT EXISTS `db`.{name}_local ON CLUSTER 'dw' TO `db`.")),
                        "{name}"
                    );
                    continue;
                }
                if let Some(insert) = stmt.strip_prefix("INSERT INTO ") {
                    let name = insert.split_whitespace().next().unwrap();
                    assert!(ddl.contains(&format!("INSERT INTO `db`.{name}\nSELECT ")), "{stmt}");
                    continue;
                }
                let Some(create) = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ") else {
                    let name = stmt.strip_prefix("ALTER TABLE ").unwrap().split_whitespace().next().unwrap();
                    assert!(ddl.contains(&format!("ALTER TABLE `db`.{name}_local ON CLUSTER 'dw' ADD COLUMN")), "{name}");
                    let key = super::shard_key(name);
                    assert!(ddl.contains(&format!("DROP TABLE IF EXISTS `db`.{name} ON CLUSTER 'dw';\nCREATE TABLE IF NOT EXISTS `db`.{name} ON CLUSTER 'dw' AS `db`.{name}_local ENGINE = Distributed('dw', 'db', {name}_local, {key});")), "{name}");
                    continue;
                };
                let name = create.split_whitespace().next().unwrap();
                assert!(ddl.contains(&format!("CREATE TABLE IF NOT EXISTS `db`.{name}_local ON CLUSTER 'dw'")), "{name}");
                assert!(ddl.contains(&format!("AS `db`.{name}_local ENGINE = Distributed('dw', 'db', {name}_local,")), "{name}");
            }
        }
        assert!(
            ddl.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)")
        );
        assert!(ddl.contains("snapshots_local, cityHash64(asset_id))"));
        assert_eq!(super::shard_key("evaluations"), "cityHash64(asset_id)");
        assert_eq!(super::shard_key("scores"), "rand()");
        assert!(
            ddl.contains("TO `db`.latest_evaluations_local AS\nSELECT") && ddl.contains("FROM `db`.evaluations_local GROUP BY"),
            "{ddl}"
        );
        assert!(ddl.contains("FROM `db`.evaluations GROUP BY asset_id, control_id;\n"), "the backfill reads the Distributed table");
        assert!(!ddl.contains("ENGINE = ReplacingMergeTree("), "every MergeTree is replicated");
        // The database first, the record of applied migrations, and each
        // migration's row after its statements.
        assert!(ddl.contains("\nCREATE DATABASE IF NOT EXISTS `db` ON CLUSTER 'dw';\n"));
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS `db`.schema_migrations_local ON CLUSTER 'dw'"));
        for m in super::MIGRATIONS {
            let row = format!("VALUES ({}, '{}', '{}', now());", m.version, m.name, m.checksum());
            assert!(ddl.contains(&row), "{row}");
        }
        // Names that would need quoting are refused.
        assert!(super::cluster_ddl("dw", "a`b").unwrap_err().contains("database \"a`b\""));
        assert!(super::cluster_ddl("d'w", "db").is_err());
    }
}
