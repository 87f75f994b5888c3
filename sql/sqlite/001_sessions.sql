-- Server-side sessions, same meaning as the PostgreSQL table. SQLite has no timestamptz:
-- `expire` and `created_at` are Unix epoch seconds (UTC), set from SQLite's clock.
CREATE TABLE IF NOT EXISTS {table} (
    sid        TEXT PRIMARY KEY,
    sess       TEXT NOT NULL,
    expire     REAL NOT NULL,
    created_at REAL NOT NULL,
    user_id    TEXT
);

CREATE INDEX IF NOT EXISTS {table}_expire_idx ON {table} (expire);
CREATE INDEX IF NOT EXISTS {table}_user_id_idx ON {table} (user_id);
