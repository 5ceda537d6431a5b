-- OAuth connections: a connection's status (needs_reauth after the provider refused its refresh
-- token), the lock that serialises token refreshes across nodes, and the single-use states of
-- connect flows in progress.
ALTER TABLE connections ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE connections ADD COLUMN refresh_lock_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_lock_until BIGINT;

CREATE TABLE oauth_states (
    id                   TEXT PRIMARY KEY,
    state_hash           TEXT NOT NULL UNIQUE,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    connection_id        TEXT,
    request              TEXT NOT NULL,
    code_verifier_sealed TEXT NOT NULL,
    expires_at           BIGINT NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
