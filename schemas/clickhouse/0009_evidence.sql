-- Tamper-evident evidence. Every stored batch is a link of its collector's
-- chain: the SHA-256 of the previous link's hash and the batch's content
-- (a 16-byte digest of every row, with its table), so that a row altered,
-- inserted or deleted later, or a batch removed, no longer matches. Per
-- hour, a Merkle root over the chain's links.

CREATE TABLE IF NOT EXISTS evidence_chain (
    chain_id String,
    seq UInt64,
    batch_id String,
    at DateTime,
    prev_hash String,
    hash String,
    row_tables Array(UInt8),
    row_digests Array(FixedString(16))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (chain_id, seq);

CREATE TABLE IF NOT EXISTS evidence_roots (
    chain_id String,
    hour DateTime,
    root String,
    first_seq UInt64,
    last_seq UInt64,
    links UInt32,
    computed_at DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (chain_id, hour);
