-- API keys replace the single kind of admin key: each has a scope (`admin`, `read_only`, or
-- `workspaces` with a role in each listed workspace, as JSON), an optional expiry and the time it
-- was last used. Keys are stored as SHA-256 digests only; `hint` is a non-secret prefix.
CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    workspaces   TEXT NOT NULL DEFAULT '[]',
    expires_at   BIGINT,
    last_used_at BIGINT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL
);
INSERT INTO api_keys (id, name, key_hash, hint, scope, created_at)
    SELECT id, name, key_hash, hint, 'admin', created_at FROM admin_keys;
DROP TABLE admin_keys;

-- Who changed what, when and from where. No foreign keys: the record of a deletion outlives what
-- was deleted. `summary` is JSON with secrets left out.
CREATE TABLE audit_log (
    id            TEXT COLLATE "C" PRIMARY KEY,
    at            BIGINT NOT NULL,
    workspace_id  TEXT COLLATE "C",
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT COLLATE "C",
    actor_name    TEXT,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    summary       TEXT NOT NULL,
    client_addr   TEXT,
    user_agent    TEXT
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
