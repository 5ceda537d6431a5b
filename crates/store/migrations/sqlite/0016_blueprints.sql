-- Blueprints (docs/blueprints.md): a name, and its versions, each the document as submitted
-- (source) and as read (document, JSON). A new version is stored only when the document changed.
CREATE TABLE blueprints (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE TABLE blueprint_versions (
    blueprint_id TEXT NOT NULL REFERENCES blueprints(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    document     TEXT NOT NULL,
    source       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (blueprint_id, version)
);
