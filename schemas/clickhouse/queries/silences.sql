-- Every silence in its latest version (edits and expiry insert a newer
-- row), not yet ended.
SELECT silence_id, matchers, starts_at, ends_at, created_by, comment
FROM
(
    SELECT silence_id, argMax(matchers, updated_at) AS matchers, argMax(starts_at, updated_at) AS starts_at,
           argMax(ends_at, updated_at) AS ends_at, argMax(created_by, updated_at) AS created_by,
           argMax(comment, updated_at) AS comment
    FROM silences
    GROUP BY silence_id
) AS s
WHERE ends_at > now()
