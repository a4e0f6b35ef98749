-- When each probe last reported (any asset): a probe that stopped is a
-- condition of its own. Parameter: probe ids.
-- test-params: ['web']
SELECT probe_id, toUInt32(max(minute)) AS last_minute
FROM sla_minutes
WHERE has(?, probe_id)
GROUP BY probe_id
