-- Recomputes the minute rollups of [from, to) from the raw probe results
-- (duplicates folded by their key). Parameters: version, from, to.
-- test-params: 1, 1767225600, 1767229200
INSERT INTO sla_minutes (probe_id, asset_id, minute, total, good, le_50ms, le_100ms, le_250ms, le_500ms, le_1000ms, le_2500ms, le_5000ms, version)
SELECT probe_id, asset_id, toStartOfMinute(timestamp) AS minute, count() AS total, countIf(success = 1) AS good,
       countIf(success = 1 AND latency_us <= 50000) AS le_50ms, countIf(success = 1 AND latency_us <= 100000) AS le_100ms,
       countIf(success = 1 AND latency_us <= 250000) AS le_250ms, countIf(success = 1 AND latency_us <= 500000) AS le_500ms,
       countIf(success = 1 AND latency_us <= 1000000) AS le_1000ms, countIf(success = 1 AND latency_us <= 2500000) AS le_2500ms,
       countIf(success = 1 AND latency_us <= 5000000) AS le_5000ms, toUInt64(?) AS version
FROM
(
    SELECT asset_id, probe_id, timestamp, timestamp_ms, any(success) AS success, any(latency_us) AS latency_us
    FROM sla_measurements
    WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND kind != 'host'
    GROUP BY asset_id, probe_id, timestamp, timestamp_ms
) AS m
GROUP BY probe_id, asset_id, minute
