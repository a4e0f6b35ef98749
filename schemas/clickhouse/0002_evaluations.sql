-- What the collector derived: control evaluations and violation lifecycle.

CREATE TABLE IF NOT EXISTS evaluations (
    asset_id String,
    control_id String,
    status String,
    severity String,
    evaluated_at DateTime,
    snapshot_id String,
    sequence Int64,
    frameworks Array(String),
    evidence String,
    message String,
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (asset_id, control_id, evaluated_at, snapshot_id);

CREATE TABLE IF NOT EXISTS violations (
    violation_id String,
    asset_id String,
    control_id String,
    title String,
    severity String,
    event String,
    at DateTime,
    frameworks Array(String),
    evidence String,
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (asset_id, control_id, violation_id, event);
