-- The status of every (asset, control) at an instant: its last evaluation
-- at or before it. Parameter: the instant (seconds since the epoch).
SELECT asset_id, control_id, argMax(status, (evaluated_at, evaluated_ms)) AS status
FROM evaluations
WHERE evaluated_at <= toDateTime(?)
GROUP BY asset_id, control_id
