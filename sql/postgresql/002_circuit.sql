-- Circuit-breaker state shared by every worker of every instance. One row per circuit;
-- times come from the database's clock. `trial_owner`/`trial_until` is the lease of the
-- one half-open trial call allowed at a time.
CREATE TABLE IF NOT EXISTS {table}_circuit (
    name        text        PRIMARY KEY,
    state       text        NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half-open')),
    failures    integer     NOT NULL DEFAULT 0,
    successes   integer     NOT NULL DEFAULT 0,
    opened_at   timestamptz,
    trial_owner text,
    trial_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO {table}_circuit (name) VALUES ('wuzapi') ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS {table}_circuit_events (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    worker     text
);

CREATE INDEX IF NOT EXISTS {table}_circuit_events_name_id_idx ON {table}_circuit_events (name, id);
