-- The latest result of every (asset, control), with the asset's latest
-- labels and, for a failing control, when its open violation was opened
-- (0 otherwise), and the collection time of the asset's latest snapshot
-- (the age of the evidence; 0 when none): the input of scores and gaps.
SELECT asset_id, control_id, status, last_evaluated, opened_at, label_keys, label_values, evidence_at
FROM
(
    SELECT asset_id, control_id, status, last_evaluated, opened_at
    FROM
    (
        SELECT asset_id, control_id, argMaxMerge(status_state) AS status, maxMerge(last_state) AS last_evaluated
        FROM latest_evaluations
        GROUP BY asset_id, control_id
    ) AS e
    ANY LEFT JOIN
    (
        SELECT asset_id, control_id, min(opened) AS opened_at
        FROM
        (
            SELECT asset_id, control_id, violation_id, argMax(event, at) AS last_event, minIf(at, event = 'opened') AS opened
            FROM violations
            GROUP BY asset_id, control_id, violation_id
        ) AS lifecycle
        WHERE last_event = 'opened'
        GROUP BY asset_id, control_id
    ) AS v
    USING (asset_id, control_id)
) AS r
ANY LEFT JOIN
(
    SELECT asset_id, argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values,
           max(collected_at) AS evidence_at
    FROM snapshots
    GROUP BY asset_id
) AS l
USING (asset_id)
