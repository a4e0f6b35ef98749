-- Drift: every change of a control's status on an asset, with the facts it
-- read before and after, and the audit event held responsible (when one
-- was found; the cause_* columns are then empty and cause_at is 0).

CREATE TABLE IF NOT EXISTS drift_events (
    drift_id String,
    asset_id String,
    control_id String,
    title String,
    severity String,
    direction String,
    from_status String,
    to_status String,
    at DateTime,
    frameworks Array(String),
    before String,
    after String,
    changed Array(String),
    cause_event_id String,
    cause_source String,
    cause_action String,
    cause_user String,
    cause_object String,
    cause_at DateTime,
    cause_matched String,
    snapshot_id String,
    sequence Int64,
    batch_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (asset_id, control_id, at, drift_id);
