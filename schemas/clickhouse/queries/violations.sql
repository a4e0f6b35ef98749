-- Every violation with its lifecycle: opened (and when), resolved (and
-- when), its control, severity, frameworks and asset labels. The caller
-- filters and pages.
SELECT violation_id, v.asset_id AS asset_id, control_id, title, severity, frameworks, opened_at, resolved_at, last_event,
       label_keys, label_values
FROM
(
    SELECT violation_id, asset_id, any(control_id) AS control_id, any(title) AS title, any(severity) AS severity,
           any(frameworks) AS frameworks, minIf(at, event = 'opened') AS opened_at, maxIf(at, event = 'resolved') AS resolved_at,
           argMax(event, at) AS last_event
    FROM violations
    GROUP BY violation_id, asset_id
) AS v
ANY LEFT JOIN
(
    SELECT asset_id, argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values
    FROM snapshots
    GROUP BY asset_id
) AS l
USING (asset_id)
ORDER BY opened_at DESC, violation_id
