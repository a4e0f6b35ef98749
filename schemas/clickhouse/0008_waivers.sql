-- Waivers, missing evidence and the order of evaluations.

-- Waivers (exceptions) with their whole history: declared in YAML next to
-- the policy packs (synced here by the collector) or created through the
-- API and CLI. The latest version of a waiver wins; a revoked waiver keeps
-- its row with revoked_at set, so posture at a past instant and reports
-- know which waivers were in force then.

CREATE TABLE IF NOT EXISTS waivers (
    waiver_id String,
    control_id String,
    requirement String,
    scope String,
    justification String,
    approver String,
    risk String,
    ticket String,
    starts_at DateTime,
    expires_at DateTime,
    revoked_at DateTime,
    revoked_by String,
    created_by String,
    source String,
    updated_at DateTime,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(starts_at)
ORDER BY waiver_id;

-- Milliseconds of an evaluation's instant: the latest result of a control
-- is argMax over (evaluated_at, evaluated_ms), so that a delta evaluated in
-- the same second as the full snapshot before it still wins.
ALTER TABLE evaluations ADD COLUMN evaluated_ms UInt16 DEFAULT 0;

-- Scores with waivers counted separately: `score` counts a waived
-- requirement as met, `score_without_waivers` as failing.
ALTER TABLE scores ADD COLUMN waived UInt32 DEFAULT 0, ADD COLUMN score_without_waivers Float64 DEFAULT score;
