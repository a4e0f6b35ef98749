-- Every open violation with what its alert needs (title, severity,
-- frameworks, evidence, when it opened) and its asset's latest labels: the
-- firing alerts a (re)started collector starts from.
SELECT violation_id, asset_id, control_id, title, severity, frameworks, evidence, opened_at, label_keys, label_values
FROM
(
    SELECT violation_id, any(asset_id) AS asset_id, any(control_id) AS control_id, argMax(event, at) AS last_event,
           any(title) AS title, any(severity) AS severity, any(frameworks) AS frameworks,
           anyIf(evidence, event = 'opened') AS evidence, minIf(at, event = 'opened') AS opened_at
    FROM violations
    GROUP BY violation_id
) AS v
ANY LEFT JOIN
(
    SELECT asset_id, argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values
    FROM snapshots
    GROUP BY asset_id
) AS l
USING (asset_id)
WHERE last_event = 'opened'
