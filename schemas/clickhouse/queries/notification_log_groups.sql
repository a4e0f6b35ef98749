-- The last notification of the given groups (any receiver): looked up when
-- a resolve arrives for a group this collector holds no state for (it was
-- notified by another collector, or before a restart). Parameter: group keys.
-- test-params: ['0:abc']
SELECT receiver, group_key, max(sent_at) AS last_sent, argMax(escalation, sent_at) AS last_escalation,
       argMax(firing, sent_at) AS last_firing, argMax(alerts, sent_at) AS last_alerts
FROM notification_log
WHERE has(?, group_key)
GROUP BY receiver, group_key
