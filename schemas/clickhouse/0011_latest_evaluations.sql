-- The latest evaluation of every (asset, control), kept by ClickHouse as
-- evaluations are inserted (a materialized view into an aggregating table):
-- posture read back at a start or a rebalance, and the current results the
-- score recorder reads every minute, cost the number of (asset, control)
-- pairs instead of every evaluation ever stored (they scanned all of
-- `evaluations`: after a month of hourly full snapshots, 155 million rows
-- for 1,000 hosts). argMax, max and min fold a redelivered batch's
-- duplicates, and the backfill below may overlap the view's first inserts
-- for the same reason. Not partitioned: retention drops `evaluations`
-- partitions, the latest state stays (one row per pair once merged).
-- Read with argMaxMerge(status_state), maxMerge(last_state),
-- minMerge(first_state) … GROUP BY asset_id, control_id.
CREATE TABLE IF NOT EXISTS latest_evaluations (
    asset_id String,
    control_id String,
    status_state AggregateFunction(argMax, String, Tuple(DateTime, UInt16)),
    last_state AggregateFunction(max, DateTime),
    first_state AggregateFunction(min, DateTime)
) ENGINE = AggregatingMergeTree()
ORDER BY (asset_id, control_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS latest_evaluations_mv TO latest_evaluations AS
SELECT asset_id, control_id,
       argMaxState(status, (evaluated_at, evaluated_ms)) AS status_state,
       maxState(evaluated_at) AS last_state,
       minState(evaluated_at) AS first_state
FROM evaluations
GROUP BY asset_id, control_id;

INSERT INTO latest_evaluations
SELECT asset_id, control_id,
       argMaxState(status, (evaluated_at, evaluated_ms)) AS status_state,
       maxState(evaluated_at) AS last_state,
       minState(evaluated_at) AS first_state
FROM evaluations
GROUP BY asset_id, control_id;
