-- An unchanged snapshot is not stored again (issue 31). Only the facts
-- whose values changed and the results that changed are written as rows;
-- a `confirmations` row holds the rest: the controls whose results equal
-- the ones last stored for them (with those statuses), and the paths a
-- full snapshot no longer has. The facts at an instant are the last full
-- snapshot that stored all of its facts (as many fact rows as its
-- `fact_count`), then every later snapshot's fact rows, less the removed
-- paths of its row and of its confirmations. A snapshot's row carries the
-- digest of the asset's facts after a full snapshot, so that what is
-- rebuilt can be checked.
--
-- One confirmations row per stored copy of a snapshot (`batch_id` is in
-- the key): what a copy confirms depends on what its collector knew (a
-- redelivery after a restart confirms nothing), and each copy stays as its
-- evidence link sealed it. A snapshot row stored before `facts_digest`
-- existed keeps its digest: the chain leaves a column added later out of
-- a row's canonical form while it holds its default.
ALTER TABLE snapshots ADD COLUMN facts_digest String DEFAULT '';

CREATE TABLE IF NOT EXISTS confirmations (
    asset_id String,
    snapshot_id String,
    sequence Int64,
    collected_at DateTime,
    collected_ms UInt16,
    controls Array(String),
    statuses Array(String),
    removed_paths Array(String),
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(collected_at)
ORDER BY (asset_id, collected_at, snapshot_id, batch_id);

-- A confirmed result is the latest evaluation of its (asset, control):
-- the reads of the latest state (posture, current results, silence,
-- dashboards) need no change. The reads at an instant take confirmations
-- from the table (results_at.sql, evaluation_at.sql).
CREATE MATERIALIZED VIEW IF NOT EXISTS latest_confirmations_mv TO latest_evaluations AS
SELECT asset_id, control_id,
       argMaxState(status, (collected_at, collected_ms)) AS status_state,
       maxState(collected_at) AS last_state,
       minState(collected_at) AS first_state
FROM confirmations ARRAY JOIN controls AS control_id, statuses AS status
GROUP BY asset_id, control_id;
