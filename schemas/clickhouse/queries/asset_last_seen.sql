-- When each asset last sent anything (snapshot or probe result): an asset
-- that went silent is a condition of its own.
SELECT asset_id, max(last_seen) AS last_seen
FROM
(
    SELECT asset_id, max(received_at) AS last_seen FROM snapshots GROUP BY asset_id
    UNION ALL
    SELECT asset_id, max(timestamp) AS last_seen FROM sla_measurements GROUP BY asset_id
) AS u
GROUP BY asset_id
