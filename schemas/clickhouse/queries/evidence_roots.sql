-- The hourly Merkle roots of a period. Parameters: from, to (seconds).
SELECT chain_id, hour, root, first_seq, last_seq, links
FROM evidence_roots FINAL
WHERE hour >= toDateTime(?) AND hour <= toDateTime(?)
ORDER BY chain_id, hour
