-- Every silence in its latest version (edits and expiry insert a row with
-- a higher version, milliseconds since the epoch), not yet ended.
SELECT silence_id, matchers, starts_at, ends_at, created_by, comment
FROM
(
    SELECT silence_id, argMax(matchers, version) AS matchers, argMax(starts_at, version) AS starts_at,
           argMax(ends_at, version) AS ends_at, argMax(created_by, version) AS created_by,
           argMax(comment, version) AS comment
    FROM silences
    GROUP BY silence_id
) AS s
WHERE ends_at > now()
