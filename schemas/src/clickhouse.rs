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
];

/// Latest posture per (asset, control) with its open violation.
pub const LATEST_POSTURE_SQL: &str = include_str!("../clickhouse/queries/latest_posture.sql");

/// Latest result per (asset, control) with labels and violation age.
pub const CURRENT_RESULTS_SQL: &str = include_str!("../clickhouse/queries/current_results.sql");
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
/// Last time each asset sent anything.
pub const ASSET_LAST_SEEN_SQL: &str = include_str!("../clickhouse/queries/asset_last_seen.sql");

/// The table that records applied migrations (created before any migration).
pub const MIGRATIONS_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
    version UInt32, name String, checksum String, applied_at DateTime) \
    ENGINE = MergeTree() ORDER BY version";

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
                assert!(s.starts_with("CREATE TABLE IF NOT EXISTS"), "{s}");
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
}
