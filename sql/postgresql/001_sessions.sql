-- Server-side sessions. `sid` is the SHA-256 (hex) of the session id; the raw id exists
-- only in the cookie. `sess` is `json`, not `jsonb`, so the text is stored exactly.
-- Times are `timestamptz` set from the database's clock.
CREATE TABLE IF NOT EXISTS {table} (
    sid        text        PRIMARY KEY,
    sess       json        NOT NULL,
    expire     timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    user_id    text
);

CREATE INDEX IF NOT EXISTS {table}_expire_idx ON {table} (expire);
CREATE INDEX IF NOT EXISTS {table}_user_id_idx ON {table} (user_id);
