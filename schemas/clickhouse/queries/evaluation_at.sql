-- The evaluation behind a result: the last evaluation of one control on
-- one asset at or before an instant, with the evidence it read. A
-- snapshot that confirmed the result (0017_confirmations.sql) is that
-- evaluation: its time, snapshot and sequence, with the evidence and
-- message of the stored row it confirmed (and that row's batch, whose
-- evidence link seals them).
-- Parameters: asset, control, instant (seconds), twice.
-- test-params: 'a', 'c', 1767225600, 'a', 'c', 1767225600
SELECT asset_id, control_id, argMax(status, (t, ms)) AS status, max(t) AS at,
       argMax(snapshot_id, (t, ms)) AS snapshot_id, argMax(sequence, (t, ms)) AS sequence,
       argMaxIf(evidence, (t, ms), stored = 1) AS evidence, argMaxIf(message, (t, ms), stored = 1) AS message,
       argMaxIf(batch_id, (t, ms), stored = 1) AS batch_id
FROM
(
    SELECT asset_id, control_id, status, evaluated_at AS t, evaluated_ms AS ms, snapshot_id, sequence, evidence, message, batch_id,
           toUInt8(1) AS stored
    FROM evaluations
    WHERE asset_id = ? AND control_id = ? AND evaluated_at <= toDateTime(?)
    UNION ALL
    SELECT asset_id, control_id, status, collected_at AS t, collected_ms AS ms, snapshot_id, sequence, '' AS evidence, '' AS message,
           batch_id, toUInt8(0) AS stored
    FROM confirmations ARRAY JOIN controls AS control_id, statuses AS status
    WHERE asset_id = ? AND control_id = ? AND collected_at <= toDateTime(?)
) AS u
GROUP BY asset_id, control_id
