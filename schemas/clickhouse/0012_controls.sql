-- The controls in force: title, severity, pack and framework mapping
-- (`framework:requirement`, e.g. `soc2:CC6.1`), written by the collector
-- running fleet-wide work whenever the policy set it holds changes (at its
-- start and after a reload). A mapping is a property of the control, not of
-- each result: evaluations written since this migration leave their
-- `frameworks` column empty (its bytes were a third of a row), and
-- dashboards join `latest_evaluations` to this table. Read the current
-- catalog with argMax(…, loaded_at) … GROUP BY control_id; a control
-- dropped from the packs keeps its last row (`loaded_at` tells).
CREATE TABLE IF NOT EXISTS controls (
    control_id String,
    title String,
    severity String,
    pack String,
    frameworks Array(String),
    loaded_at DateTime
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY control_id;
