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

/// The schema of every migration for a ClickHouse cluster: each table as a
/// `<name>_local` replicated table on every node and `<name>` as a
/// Distributed table over them (sharded by asset where the table has one,
/// so an asset's rows, and their deduplication, stay on one shard). The
/// collector then reads and writes `<name>` as usual, with
/// `clickhouse.migrate: false`. Uses the `{shard}` and `{replica}` macros
/// of the servers' configuration.
pub fn cluster_ddl(cluster: &str) -> Result<String, String> {
    let mut out = format!(
        "-- Driftwatch schema for the ClickHouse cluster '{cluster}'; generated by `driftwatch-collector schema --cluster {cluster}`.\n"
    );
    for m in MIGRATIONS {
        out.push_str(&format!("\n-- {}\n", m.name));
        for stmt in m.statements() {
            // A column change applies to the replicated table and its
            // Distributed twin alike.
            if let Some(rest) = stmt.strip_prefix("ALTER TABLE ") {
                let (name, change) = rest.split_once(' ').ok_or_else(|| format!("{}: ALTER without a table", m.name))?;
                if !change.trim_start().starts_with("ADD COLUMN") {
                    return Err(format!("{}: only ALTER TABLE … ADD COLUMN can be clustered: {stmt}", m.name));
                }
                out.push_str(&format!("ALTER TABLE {name}_local ON CLUSTER '{cluster}' {change};\n"));
                out.push_str(&format!("ALTER TABLE {name} ON CLUSTER '{cluster}' {change};\n"));
                continue;
            }
            // A materialized view runs on each node, over the replicated
            // tables its inserts land in.
            if let Some(rest) = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
                let mut words = rest.split_whitespace();
                let (name, to, target) = (words.next().unwrap_or_default(), words.next(), words.next().unwrap_or_default());
                let (Some("TO"), Some((_, select))) = (to, rest.split_once(" AS\n").or_else(|| rest.split_once(" AS "))) else {
                    return Err(format!("{}: {name}: only a materialized view `TO` a table can be clustered", m.name));
                };
                let (before, after) = select.split_once("\nFROM ").ok_or_else(|| format!("{}: {name}: no FROM on a line", m.name))?;
                let (source, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                out.push_str(&format!(
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_local ON CLUSTER '{cluster}' TO {target}_local AS\n{before}\nFROM {source}_local {tail};\n"
                ));
                continue;
            }
            // A backfill runs once, through the Distributed tables.
            if stmt.starts_with("INSERT INTO ") {
                out.push_str(&format!("{stmt};\n"));
                continue;
            }
            let rest = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ").ok_or_else(|| {
                format!(
                    "{}: only CREATE TABLE, CREATE MATERIALIZED VIEW … TO, INSERT INTO … SELECT and ALTER TABLE … ADD COLUMN statements can be clustered: {}",
                    m.name,
                    stmt.lines().next().unwrap_or_default()
                )
            })?;
            let (name, rest) = rest.split_once(' ').ok_or_else(|| format!("{}: no table name", m.name))?;
            let at = rest.find(") ENGINE = ").ok_or_else(|| format!("{}: {name}: no ENGINE", m.name))?;
            let (columns, tail) = (&rest[..=at], &rest[at + ") ENGINE = ".len()..]);
            let open = tail.find('(').ok_or_else(|| format!("{}: {name}: engine without arguments", m.name))?;
            let close = tail.find(')').ok_or_else(|| format!("{}: {name}: engine without arguments", m.name))?;
            let (engine, args, after) = (&tail[..open], &tail[open + 1..close], &tail[close + 1..]);
            if !engine.ends_with("MergeTree") {
                return Err(format!("{}: {name}: engine {engine} is not a MergeTree", m.name));
            }
            let args = if args.trim().is_empty() { String::new() } else { format!(", {args}") };
            out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER '{cluster}' {columns} ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}'{args}){after};\n"
            ));
            let key = if columns.contains("asset_id String") { "cityHash64(asset_id)" } else { "rand()" };
            out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {name} ON CLUSTER '{cluster}' AS {name}_local ENGINE = Distributed('{cluster}', currentDatabase(), {name}_local, {key});\n"
            ));
        }
    }
    Ok(out)
}

impl Migration {
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
        let ddl = super::cluster_ddl("dw").unwrap();
        for m in super::MIGRATIONS {
            for stmt in m.statements() {
                if let Some(view) = stmt.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
                    let name = view.split_whitespace().next().unwrap();
                    assert!(ddl.contains(&format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_local ON CLUSTER 'dw' TO ")), "{name}");
                    continue;
                }
                if stmt.starts_with("INSERT INTO ") {
                    assert!(ddl.contains(&stmt), "{stmt}");
                    continue;
                }
                let Some(create) = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ") else {
                    let name = stmt.strip_prefix("ALTER TABLE ").unwrap().split_whitespace().next().unwrap();
                    assert!(ddl.contains(&format!("ALTER TABLE {name}_local ON CLUSTER 'dw' ADD COLUMN")), "{name}");
                    assert!(ddl.contains(&format!("ALTER TABLE {name} ON CLUSTER 'dw' ADD COLUMN")), "{name}");
                    continue;
                };
                let name = create.split_whitespace().next().unwrap();
                assert!(ddl.contains(&format!("CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER 'dw'")), "{name}");
                assert!(ddl.contains(&format!("AS {name}_local ENGINE = Distributed('dw', currentDatabase(), {name}_local,")), "{name}");
            }
        }
        assert!(
            ddl.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)")
        );
        assert!(ddl.contains("snapshots_local, cityHash64(asset_id))"));
        assert!(ddl.contains("TO latest_evaluations_local AS\nSELECT") && ddl.contains("FROM evaluations_local GROUP BY"), "{ddl}");
        assert!(!ddl.contains("ENGINE = ReplacingMergeTree("), "every MergeTree is replicated");
    }
}
