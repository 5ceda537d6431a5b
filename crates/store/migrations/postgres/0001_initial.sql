-- Switchyard's PostgreSQL schema: the same tables, columns and indexes as the embedded SQLite one
-- (times are BIGINT milliseconds since the Unix epoch; JSON is TEXT, kept exactly as received).
-- Ids are prefixed ULIDs compared byte-wise (COLLATE "C"), so ordering by id is ordering by creation time.

-- Small key/value facts about the installation: the config version that caches compare, the
-- master-key check value.
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('config_version', '0');

-- Keys are stored as SHA-256 digests only; `hint` is a non-secret prefix for listings.
CREATE TABLE admin_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    hint       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE publishable_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash     TEXT NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX publishable_keys_workspace ON publishable_keys (workspace_id, id);

CREATE TABLE sessions (
    id               TEXT COLLATE "C" PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash       TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    allowed_origins  TEXT NOT NULL,
    external_user_id TEXT,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX sessions_workspace ON sessions (workspace_id);

-- Secrets (`*_sealed`) are AES-256-GCM ciphertexts tagged with their master key id, bound to the row id.
CREATE TABLE connections (
    id                         TEXT COLLATE "C" PRIMARY KEY,
    workspace_id               TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind                       TEXT NOT NULL,
    name                       TEXT NOT NULL,
    config                     TEXT NOT NULL,
    credentials_sealed         TEXT,
    signing_secret_sealed      TEXT,
    previous_secret_sealed     TEXT,
    previous_secret_expires_at BIGINT,
    retry_policy               TEXT NOT NULL,
    timeout_ms                 BIGINT NOT NULL,
    max_in_flight              BIGINT NOT NULL,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX connections_workspace ON connections (workspace_id, id);

-- Rules are soft-deleted (`deleted_at`): deliveries accepted before the deletion still need the
-- rule's action to complete.
CREATE TABLE rules (
    id            TEXT COLLATE "C" PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    event         TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    action        TEXT NOT NULL,
    action_config TEXT NOT NULL,
    conditions    TEXT,
    active        BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE INDEX rules_workspace ON rules (workspace_id, id) WHERE deleted_at IS NULL;
CREATE INDEX rules_connection ON rules (connection_id);

-- History tables carry workspace_id without a foreign key: the hot insert path skips the check,
-- and deleting a workspace deletes its history explicitly.
CREATE TABLE events (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    event        TEXT NOT NULL,
    resource     TEXT,
    resource_id  TEXT,
    payload      TEXT NOT NULL,
    occurred_at  BIGINT,
    received_at  BIGINT NOT NULL,
    status       TEXT NOT NULL,
    test         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX events_workspace ON events (workspace_id, id);

CREATE TABLE idempotency_keys (
    workspace_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The queue and the history in one table. `next_attempt_at` orders the due queue; the partial
-- index keeps finished deliveries (the vast majority) out of every claim.
CREATE TABLE deliveries (
    id               TEXT COLLATE "C" PRIMARY KEY,
    workspace_id     TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    rule_id          TEXT NOT NULL,
    connection_id    TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt_count    BIGINT NOT NULL DEFAULT 0,
    replay_base      BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (connection_id, next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (connection_id, lease_expires_at) WHERE status = 'delivering';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_workspace ON deliveries (workspace_id, id);

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    number           BIGINT NOT NULL,
    workspace_id     TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, number)
);
