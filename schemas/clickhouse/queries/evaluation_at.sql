-- The evaluation behind a result: the last evaluation of one control on
-- one asset at or before an instant, with the evidence it read.
-- Parameters: asset, control, instant (seconds).
-- test-params: 'a', 'c', 1767225600
SELECT asset_id, control_id, argMax(status, (evaluated_at, evaluated_ms)) AS status, max(evaluated_at) AS at,
       argMax(snapshot_id, (evaluated_at, evaluated_ms)) AS snapshot_id, argMax(sequence, (evaluated_at, evaluated_ms)) AS sequence,
       argMax(evidence, (evaluated_at, evaluated_ms)) AS evidence, argMax(message, (evaluated_at, evaluated_ms)) AS message,
       argMax(batch_id, (evaluated_at, evaluated_ms)) AS batch_id
FROM evaluations
WHERE asset_id = ? AND control_id = ? AND evaluated_at <= toDateTime(?)
GROUP BY asset_id, control_id
