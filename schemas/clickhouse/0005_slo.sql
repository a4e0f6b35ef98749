-- SLO rollups: probe results per (probe, asset, minute). Recomputed by the
-- collector from sla_measurements for recent minutes (late or redelivered
-- results land in a later recomputation); the highest version of a minute
-- wins, so a recomputation replaces, never adds. Successful probes are also
-- counted under fixed latency bounds (a latency SLO picks one).

CREATE TABLE IF NOT EXISTS sla_minutes (
    probe_id String,
    asset_id String,
    minute DateTime,
    total UInt64,
    good UInt64,
    le_50ms UInt64,
    le_100ms UInt64,
    le_250ms UInt64,
    le_500ms UInt64,
    le_1000ms UInt64,
    le_2500ms UInt64,
    le_5000ms UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (probe_id, asset_id, minute);
