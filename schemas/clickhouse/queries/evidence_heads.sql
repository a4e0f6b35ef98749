-- Per chain, the links stored in a period: count, first and last sequence
-- number, and the last link's hash (the chain's head for the period).
-- Parameters: chain ('' for all), chain, from, to (seconds).
-- test-params: '', '', 1767225600, 1767312000
SELECT chain_id, count() AS links, min(seq) AS first_seq, max(seq) AS last_seq, argMax(hash, seq) AS head, max(at) AS last_at
FROM evidence_chain FINAL
WHERE (? = '' OR chain_id = ?) AND at >= toDateTime(?) AND at <= toDateTime(?)
GROUP BY chain_id
ORDER BY chain_id
