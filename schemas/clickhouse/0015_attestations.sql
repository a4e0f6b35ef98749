-- Attestations: what people state about the controls no agent can observe
-- (access reviews, training, restore tests), with the evidence files they
-- attached. An attestation is never changed: a new one supersedes it. Each
-- file is listed by name, SHA-256, size and content type; its bytes are
-- kept once per content in attestation_files (base64), so `verify` can
-- show that what is stored still hashes to what was attested.
CREATE TABLE IF NOT EXISTS attestations (
    attestation_id String,
    control_id String,
    status String,
    statement String,
    attested_by String,
    attested_at DateTime,
    source String,
    file_names Array(String),
    file_sha256 Array(String),
    file_sizes Array(UInt64),
    file_types Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(attested_at)
ORDER BY (control_id, attestation_id);

CREATE TABLE IF NOT EXISTS attestation_files (
    sha256 String,
    content_type String,
    size UInt64,
    content String,
    stored_at DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(stored_at)
ORDER BY sha256;

-- Of a score's assessed requirements, those whose only evidence is
-- attested (the rest have automated evidence). NULL: no catalog.
ALTER TABLE scores ADD COLUMN attested Nullable(UInt32);
