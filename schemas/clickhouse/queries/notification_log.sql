-- The last notification of every (receiver, group) in the past 30 days:
-- restored at start so that a restart neither repeats nor loses a page.
SELECT receiver, group_key, max(sent_at) AS last_sent, argMax(escalation, sent_at) AS last_escalation,
       argMax(firing, sent_at) AS last_firing, argMax(alerts, sent_at) AS last_alerts
FROM notification_log
WHERE sent_at > now() - INTERVAL 30 DAY
GROUP BY receiver, group_key
