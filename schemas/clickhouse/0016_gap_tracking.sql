-- Gaps tracked to closure: every change of a gap's tracking (its state,
-- assignee, note, the waiver that accepted its risk) is a new row holding
-- the whole tracking after the change; the latest version per gap wins
-- and the rows before it are the history an auditor reads. A gap's id is
-- `<framework>:<requirement>` (fleet scope).
CREATE TABLE IF NOT EXISTS gap_events (
    gap_id String,
    state String,
    assignee String,
    note String,
    waiver_id String,
    changed_by String,
    changed_at DateTime,
    version UInt64
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(changed_at)
ORDER BY (gap_id, version);
