-- One evidence file by its SHA-256 (the one parameter).
-- test-params: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
SELECT
    sha256,
    any(content_type) AS content_type,
    any(size) AS size,
    any(content) AS content,
    min(stored_at) AS stored_at
FROM attestation_files
WHERE sha256 = ?
GROUP BY sha256
