-- Raw streams as received from agents. Portable DDL: runs on ClickHouse 18.16
-- and current releases (DateTime, not DateTime64; no TTL, no Map; labels and
-- extra fields as parallel key/value arrays). Retention drops whole monthly
-- partitions. ReplacingMergeTree with deterministic ordering keys folds rows
-- that an at-least-once redelivery wrote twice.

CREATE TABLE IF NOT EXISTS snapshots (
    asset_id String,
    asset_kind String,
    hostname String,
    label_keys Array(String),
    label_values Array(String),
    agent_id String,
    agent_version String,
    snapshot_id String,
    sequence Int64,
    kind String,
    collected_at DateTime,
    received_at DateTime,
    fact_count UInt32,
    removed_paths Array(String),
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(collected_at)
ORDER BY (asset_id, sequence, snapshot_id);

CREATE TABLE IF NOT EXISTS facts (
    asset_id String,
    snapshot_id String,
    sequence Int64,
    snapshot_kind String,
    collected_at DateTime,
    path String,
    value_type String,
    value String,
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(collected_at)
ORDER BY (asset_id, path, collected_at, snapshot_id);

CREATE TABLE IF NOT EXISTS audit_events (
    event_id String,
    asset_id String,
    hostname String,
    source String,
    timestamp DateTime,
    timestamp_ms UInt16,
    actor_user String,
    actor_uid Nullable(Int64),
    actor_auid String,
    actor_groups Array(String),
    action String,
    object String,
    outcome String,
    source_address String,
    raw String,
    extra_keys Array(String),
    extra_values Array(String),
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (asset_id, timestamp, event_id);

CREATE TABLE IF NOT EXISTS sla_measurements (
    asset_id String,
    probe_id String,
    target String,
    kind String,
    timestamp DateTime,
    timestamp_ms UInt16,
    success UInt8,
    latency_us Int64,
    status_code Nullable(Int32),
    error String,
    cpu_percent Nullable(Float64),
    memory_used_bytes Nullable(Int64),
    memory_total_bytes Nullable(Int64),
    disk_used_percent Nullable(Float64),
    load1 Nullable(Float64),
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (asset_id, probe_id, timestamp, timestamp_ms);
