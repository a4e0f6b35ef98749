-- Results to mark unknown because their asset went silent: the latest
-- result of every (asset, control) that is neither unknown nor not
-- applicable, of assets with no snapshot and no heartbeat since an
-- instant. Parameters: that instant (seconds), twice.
SELECT asset_id, control_id, status, last_evaluated, last_seen
FROM
(
    SELECT asset_id, control_id, argMaxMerge(status_state) AS status, maxMerge(last_state) AS last_evaluated
    FROM latest_evaluations
    WHERE asset_id IN
    (
        SELECT asset_id
        FROM
        (
            SELECT asset_id, max(received_at) AS seen FROM snapshots GROUP BY asset_id
            UNION ALL
            SELECT asset_id, max(timestamp) AS seen FROM sla_measurements WHERE probe_id = 'heartbeat' GROUP BY asset_id
        ) AS u
        GROUP BY asset_id
        HAVING max(seen) < toDateTime(?)
    )
    GROUP BY asset_id, control_id
) AS e
ANY INNER JOIN
(
    SELECT asset_id, max(seen) AS last_seen
    FROM
    (
        SELECT asset_id, max(received_at) AS seen FROM snapshots GROUP BY asset_id
        UNION ALL
        SELECT asset_id, max(timestamp) AS seen FROM sla_measurements WHERE probe_id = 'heartbeat' GROUP BY asset_id
    ) AS u
    GROUP BY asset_id
    HAVING max(seen) < toDateTime(?)
) AS s
USING (asset_id)
WHERE status NOT IN ('unknown', 'not_applicable')
