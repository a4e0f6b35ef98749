-- Every change of every gap's tracking, in order (a change written twice
-- is listed once).
SELECT gap_id, any(state) AS state, any(assignee) AS assignee, any(note) AS note, any(waiver_id) AS waiver_id,
    any(changed_by) AS changed_by, any(changed_at) AS changed_at, version
FROM gap_events
GROUP BY gap_id, version
ORDER BY gap_id, version
