-- Every write through the API: who (the API key's name), what, when, and
-- how it ended.

CREATE TABLE IF NOT EXISTS api_audit (
    at DateTime,
    key_name String,
    method String,
    path String,
    status UInt16,
    detail String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, key_name);
