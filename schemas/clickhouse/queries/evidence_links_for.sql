-- The chain links of given batches (rows stored in a period may belong to
-- batches chained just outside it). Parameters: batch ids.
-- test-params: ['b1']
SELECT chain_id, seq, batch_id, at, prev_hash, hash, row_tables, row_digests
FROM evidence_chain FINAL
WHERE has(?, batch_id)
ORDER BY chain_id, seq
