-- Compliance scores over time, recorded by the collector every
-- `evaluation.score_interval_secs` (the same computation as the `posture`
-- command): fleet-wide and per value of every asset label.

CREATE TABLE IF NOT EXISTS scores (
    at DateTime,
    framework String,
    scope String,
    label_key String,
    group_value String,
    score Float64,
    passing UInt32,
    partial UInt32,
    failing UInt32,
    applicable UInt32
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (framework, scope, label_key, group_value, at);
