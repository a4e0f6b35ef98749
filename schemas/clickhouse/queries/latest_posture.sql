-- Latest status of every (asset, control), since when it has held, when it
-- was last evaluated, and its open violation, if any. Read by the collector
-- at start and after a rebalance to restore posture. The latest status of
-- each pair comes from `latest_evaluations` (kept as evaluations are
-- inserted), not from a scan of every evaluation.
--
-- `since` is the time of the last drift event into the current status (a
-- status change), or for a control that never changed, its first
-- evaluation; a failing detection's open violation dates it too.
-- Portable: subqueries carry aliases (current releases require them) and
-- columns stay unqualified (18.16 resolves qualified names poorly across
-- JOINs).
SELECT asset_id, control_id, status, last_evaluated,
       if(changed_at > 0, changed_at, if(opened_at > 0, opened_at, first_evaluated)) AS since,
       violation_id
FROM
(
    SELECT asset_id, control_id, status, last_evaluated, first_evaluated, changed_at, violation_id, opened_at
    FROM
    (
        SELECT asset_id, control_id, status, last_evaluated, first_evaluated, changed_at
        FROM
        (
            SELECT asset_id, control_id, argMaxMerge(status_state) AS status,
                   maxMerge(last_state) AS last_evaluated, minMerge(first_state) AS first_evaluated
            FROM latest_evaluations
            GROUP BY asset_id, control_id
        ) AS e
        ANY LEFT JOIN
        (
            SELECT asset_id, control_id, max(at) AS changed_at
            FROM drift_events
            GROUP BY asset_id, control_id
        ) AS d
        USING (asset_id, control_id)
    ) AS ed
    ANY LEFT JOIN
    (
        SELECT asset_id, control_id, violation_id, opened_at
        FROM
        (
            SELECT asset_id, control_id, violation_id, argMax(event, at) AS last_event, minIf(at, event = 'opened') AS opened_at
            FROM violations
            GROUP BY asset_id, control_id, violation_id
        ) AS lifecycle
        WHERE last_event = 'opened'
    ) AS v
    USING (asset_id, control_id)
) AS p
