-- Switchyard's embedded schema. Times are milliseconds since the Unix epoch (INTEGER); JSON is TEXT.
-- Ids are prefixed ULIDs, so ordering by id is ordering by creation time (cursor pagination).

-- Small key/value facts about the installation: the config version that caches compare, the
-- master-key check value.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('config_version', '0');

-- Keys are stored as SHA-256 digests only; `hint` is a non-secret prefix for listings.
CREATE TABLE admin_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    hint       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE publishable_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash     TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX publishable_keys_workspace ON publishable_keys (workspace_id, id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash       TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    allowed_origins  TEXT NOT NULL,
    external_user_id TEXT,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX sessions_workspace ON sessions (workspace_id);

-- Secrets (`*_sealed`) are AES-256-GCM ciphertexts tagged with their master key id, bound to the row id.
CREATE TABLE connections (
    id                         TEXT PRIMARY KEY,
    workspace_id               TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind                       TEXT NOT NULL,
    name                       TEXT NOT NULL,
    config                     TEXT NOT NULL,
    credentials_sealed         TEXT,
    signing_secret_sealed      TEXT,
    previous_secret_sealed     TEXT,
    previous_secret_expires_at INTEGER,
    retry_policy               TEXT NOT NULL,
    timeout_ms                 INTEGER NOT NULL,
    max_in_flight              INTEGER NOT NULL,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);
CREATE INDEX connections_workspace ON connections (workspace_id, id);

-- Rules are soft-deleted (`deleted_at`): deliveries accepted before the deletion still need the
-- rule's action to complete.
CREATE TABLE rules (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    event         TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    action        TEXT NOT NULL,
    action_config TEXT NOT NULL,
    conditions    TEXT,
    active        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);
CREATE INDEX rules_workspace ON rules (workspace_id, id) WHERE deleted_at IS NULL;
CREATE INDEX rules_connection ON rules (connection_id);

-- History tables carry workspace_id without a foreign key: the hot insert path skips the check,
-- and deleting a workspace deletes its history explicitly.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    event        TEXT NOT NULL,
    resource     TEXT,
    resource_id  TEXT,
    payload      TEXT NOT NULL,
    occurred_at  INTEGER,
    received_at  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    test         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_workspace ON events (workspace_id, id);

CREATE TABLE idempotency_keys (
    workspace_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The queue and the history in one table. `next_attempt_at` orders the due queue; the partial
-- index keeps finished deliveries (the vast majority) out of every claim.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    rule_id          TEXT NOT NULL,
    connection_id    TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    replay_base      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (connection_id, next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (connection_id, lease_expires_at) WHERE status = 'delivering';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_workspace ON deliveries (workspace_id, id);

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    workspace_id     TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
