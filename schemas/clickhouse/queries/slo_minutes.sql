-- Per-minute totals of a set of probes since an instant (latest rollup
-- version of each probe, asset and minute): an SLO's SLIs and burn rates
-- over every window are summed from these. Parameters: probe ids, from.
-- test-params: ['web'], 1767225600
SELECT minute, sum(total) AS total, sum(good) AS good, sum(le_50ms) AS le_50ms, sum(le_100ms) AS le_100ms,
       sum(le_250ms) AS le_250ms, sum(le_500ms) AS le_500ms, sum(le_1000ms) AS le_1000ms, sum(le_2500ms) AS le_2500ms,
       sum(le_5000ms) AS le_5000ms
FROM
(
    SELECT probe_id, asset_id, minute, argMax(total, version) AS total, argMax(good, version) AS good,
           argMax(le_50ms, version) AS le_50ms, argMax(le_100ms, version) AS le_100ms, argMax(le_250ms, version) AS le_250ms,
           argMax(le_500ms, version) AS le_500ms, argMax(le_1000ms, version) AS le_1000ms,
           argMax(le_2500ms, version) AS le_2500ms, argMax(le_5000ms, version) AS le_5000ms
    FROM sla_minutes
    WHERE has(?, probe_id) AND minute >= toDateTime(?)
    GROUP BY probe_id, asset_id, minute
) AS r
GROUP BY minute
ORDER BY minute
