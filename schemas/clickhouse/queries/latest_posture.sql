-- Latest status of every (asset, control) and its open violation, if any.
-- Read by the collector at start to restore posture. Portable: subqueries
-- carry aliases (current releases require them) and columns stay
-- unqualified (18.16 resolves qualified names poorly across JOINs).
SELECT asset_id, control_id, status, since, violation_id
FROM
(
    SELECT asset_id, control_id, argMax(status, evaluated_at) AS status, max(evaluated_at) AS since
    FROM evaluations
    GROUP BY asset_id, control_id
) AS e
ANY LEFT JOIN
(
    SELECT asset_id, control_id, violation_id
    FROM
    (
        SELECT asset_id, control_id, violation_id, argMax(event, at) AS last_event
        FROM violations
        GROUP BY asset_id, control_id, violation_id
    )
    WHERE last_event = 'opened'
) AS v
USING (asset_id, control_id)
