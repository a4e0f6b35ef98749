-- The latest labels of every asset seen in the past week.
SELECT asset_id, argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values
FROM snapshots
WHERE received_at >= now() - INTERVAL 7 DAY
GROUP BY asset_id
