-- The chain links stored in a period, of every chain, in chain order.
-- Parameters: from, to (seconds).
SELECT chain_id, seq, batch_id, at, prev_hash, hash, row_tables, row_digests
FROM evidence_chain FINAL
WHERE at >= toDateTime(?) AND at <= toDateTime(?)
ORDER BY chain_id, seq
