-- Every evaluation in (from, to], in order per (asset, control): with
-- status_at.sql at `from`, the timeline that operating effectiveness is
-- computed from. Parameters: from, to (seconds since the epoch).
SELECT asset_id, control_id, evaluated_at, status
FROM evaluations
WHERE evaluated_at > toDateTime(?) AND evaluated_at <= toDateTime(?)
ORDER BY asset_id, control_id, evaluated_at, evaluated_ms
