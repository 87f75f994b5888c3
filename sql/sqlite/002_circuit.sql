-- Circuit-breaker state shared by every worker, same meaning as in PostgreSQL. Times are
-- Unix epoch seconds from SQLite's clock.
CREATE TABLE IF NOT EXISTS {table}_circuit (
    name        TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half-open')),
    failures    INTEGER NOT NULL DEFAULT 0,
    successes   INTEGER NOT NULL DEFAULT 0,
    opened_at   REAL,
    trial_owner TEXT,
    trial_until REAL,
    updated_at  REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);

INSERT OR IGNORE INTO {table}_circuit (name) VALUES ('wuzapi');

CREATE TABLE IF NOT EXISTS {table}_circuit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    at         REAL    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    worker     TEXT
);

CREATE INDEX IF NOT EXISTS {table}_circuit_events_name_id_idx ON {table}_circuit_events (name, id);
