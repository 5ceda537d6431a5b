-- Blueprints (docs/blueprints.md): a name, and its versions, each the document as submitted
-- (source) and as read (document, JSON). A new version is stored only when the document changed.
CREATE TABLE blueprints (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE TABLE blueprint_versions (
    blueprint_id TEXT NOT NULL REFERENCES blueprints(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    document     TEXT NOT NULL,
    source       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (blueprint_id, version)
);
