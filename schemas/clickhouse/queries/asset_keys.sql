-- Every asset's keys, latest version each (bound: an asset id, or '' for
-- all, twice). Aliases differ from the columns they aggregate: ClickHouse
-- would read a column named like an alias as that alias.
-- test-params: '', ''
SELECT
    asset_id,
    fingerprint,
    argMax(public_key, version) AS public_key,
    argMax(status, version) AS status,
    min(first_seen) AS earliest_seen,
    argMax(decided_at, version) AS decided_at,
    argMax(decided_by, version) AS decided_by,
    argMax(reason, version) AS reason,
    max(version) AS last_version
FROM asset_keys
WHERE ? = '' OR asset_id = ?
GROUP BY asset_id, fingerprint
ORDER BY asset_id, fingerprint
