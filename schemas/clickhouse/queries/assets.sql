-- Every asset: kind, host name, labels, agent, its last snapshot (when
-- collected and received, sequence) and its last heartbeat.
SELECT s.asset_id AS asset_id, kind, hostname, label_keys, label_values, agent_id, agent_version, last_collected, last_received,
       last_sequence, last_heartbeat
FROM
(
    SELECT asset_id, argMax(asset_kind, received_at) AS kind, argMax(hostname, received_at) AS hostname,
           argMax(label_keys, received_at) AS label_keys, argMax(label_values, received_at) AS label_values,
           argMax(agent_id, received_at) AS agent_id, argMax(agent_version, received_at) AS agent_version,
           max(collected_at) AS last_collected, max(received_at) AS last_received, max(sequence) AS last_sequence
    FROM snapshots
    GROUP BY asset_id
) AS s
ANY LEFT JOIN
(
    SELECT asset_id, max(timestamp) AS last_heartbeat FROM sla_measurements WHERE probe_id = 'heartbeat' GROUP BY asset_id
) AS h
USING (asset_id)
ORDER BY asset_id
