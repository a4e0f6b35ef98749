-- Alerting state that must survive a restart: what was notified to whom
-- (so a restart neither repeats nor loses a page) and silences.

CREATE TABLE IF NOT EXISTS notification_log (
    receiver String,
    group_key String,
    sent_at DateTime,
    status String,
    escalation UInt8,
    firing Array(String),
    alerts String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(sent_at)
ORDER BY (receiver, group_key, sent_at);

CREATE TABLE IF NOT EXISTS silences (
    silence_id String,
    matchers Array(String),
    starts_at DateTime,
    ends_at DateTime,
    created_by String,
    comment String,
    updated_at DateTime,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(starts_at)
ORDER BY silence_id;
