-- The posture at an instant: the last evaluation of every (asset, control)
-- at or before it, with the asset's labels and latest snapshot's collection
-- time as of then. A snapshot confirming a control's result (unchanged
-- since its last stored row: 0017_confirmations.sql) counts as an
-- evaluation at its collection time. Parameters: the instant's seconds,
-- the same seconds and its milliseconds, twice, then the seconds again.
-- test-params: 1767225600, 1767225600, 500, 1767225600, 1767225600, 500, 1767225600
SELECT asset_id, control_id, status, last_evaluated, label_keys, label_values, evidence_at
FROM
(
    SELECT asset_id, control_id, argMax(status, (t, ms)) AS status, max(t) AS last_evaluated
    FROM
    (
        SELECT asset_id, control_id, status, evaluated_at AS t, evaluated_ms AS ms
        FROM evaluations
        WHERE evaluated_at < toDateTime(?) OR (evaluated_at = toDateTime(?) AND evaluated_ms <= ?)
        UNION ALL
        SELECT asset_id, control_id, status, collected_at AS t, collected_ms AS ms
        FROM confirmations ARRAY JOIN controls AS control_id, statuses AS status
        WHERE collected_at < toDateTime(?) OR (collected_at = toDateTime(?) AND collected_ms <= ?)
    ) AS u
    GROUP BY asset_id, control_id
) AS e
ANY LEFT JOIN
(
    SELECT asset_id, argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values,
           max(collected_at) AS evidence_at
    FROM snapshots
    WHERE received_at <= toDateTime(?)
    GROUP BY asset_id
) AS l
USING (asset_id)
