-- Login rate-limit counters shared by every worker and instance: one row per limit key
-- (client address or token hash, and window), counting hits until `expire`.
CREATE TABLE IF NOT EXISTS {table}_ratelimit (
    key    text        PRIMARY KEY,
    hits   integer     NOT NULL,
    expire timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS {table}_ratelimit_expire_idx ON {table}_ratelimit (expire);
