-- A workspace's secrets (`${secret:NAME}` in blueprints): write-only values, sealed with the
-- master key. The id, `<workspace id>/<name>`, is what each value is sealed to, so a ciphertext
-- moved to another row or workspace does not open.
CREATE TABLE workspace_secrets (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    value_sealed TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX workspace_secrets_by_name ON workspace_secrets (workspace_id, name);
