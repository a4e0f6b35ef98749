-- Agent identity: the keys each asset's records are signed with (see
-- schemas/src/identity.rs). A key is `pinned` (records signed by it are
-- the asset's word: pinned on first use, or approved by an operator),
-- `pending` (seen, refused until an operator decides) or `revoked`. Every
-- decision is a new version; the latest version per (asset, key) wins and
-- the older ones are the history an auditor reads. `public_key` is empty
-- for a key enrolled by fingerprint before its agent first sent.
CREATE TABLE IF NOT EXISTS asset_keys (
    asset_id String,
    fingerprint String,
    public_key String,
    status String,
    first_seen DateTime,
    decided_at DateTime,
    decided_by String,
    reason String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (asset_id, fingerprint);
