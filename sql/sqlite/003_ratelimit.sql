-- Login rate-limit counters, same meaning as in PostgreSQL. `expire` is Unix epoch
-- seconds from SQLite's clock.
CREATE TABLE IF NOT EXISTS {table}_ratelimit (
    key    TEXT    PRIMARY KEY,
    hits   INTEGER NOT NULL,
    expire REAL    NOT NULL
);

CREATE INDEX IF NOT EXISTS {table}_ratelimit_expire_idx ON {table}_ratelimit (expire);
