-- Every attestation, oldest first (an attestation written twice is listed
-- once).
SELECT
    attestation_id,
    any(control_id) AS control_id,
    any(status) AS status,
    any(statement) AS statement,
    any(attested_by) AS attested_by,
    any(attested_at) AS attested_at,
    any(source) AS source,
    any(file_names) AS file_names,
    any(file_sha256) AS file_sha256,
    any(file_sizes) AS file_sizes,
    any(file_types) AS file_types
FROM attestations
GROUP BY attestation_id
ORDER BY attested_at, attestation_id
