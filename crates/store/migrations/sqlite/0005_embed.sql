-- Embedded pages. A session's launch URL carries a single-use token (hashed here) that opens the
-- pages once, before `expires_at`; `used_at` records the load so a second one can say why it fails.
CREATE TABLE session_launches (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    page       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX session_launches_session ON session_launches (session_id);

-- Branding for a session's pages (accent colour, logo URL, name), as JSON.
ALTER TABLE sessions ADD COLUMN branding TEXT;

-- A session narrowed to one of the product's records, and the rules bound to one: such a rule
-- matches only events with this resource and resource_id.
ALTER TABLE sessions ADD COLUMN resource TEXT;
ALTER TABLE sessions ADD COLUMN resource_id TEXT;
ALTER TABLE rules ADD COLUMN resource TEXT;
ALTER TABLE rules ADD COLUMN resource_id TEXT;

-- Event types: learned from ingestion (count, first and last seen, the latest event as a sample)
-- and declared through the API (description, JSON Schema, example payload).
CREATE TABLE event_types (
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    received_count  INTEGER NOT NULL DEFAULT 0,
    first_seen_at   INTEGER,
    last_seen_at    INTEGER,
    sample_event_id TEXT,
    description     TEXT,
    json_schema     TEXT,
    example         TEXT,
    declared_at     INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
