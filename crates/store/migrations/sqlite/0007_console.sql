-- The operator console. Members are people who sign in (through the operator's OpenID Connect
-- provider); `removed_at` keeps a removed member out even while the provider would still let
-- them in, until an owner adds them again.
CREATE TABLE members (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT,
    role            TEXT NOT NULL,
    subject         TEXT,
    created_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER,
    removed_at      INTEGER
);

-- Signed-in console sessions, by the cookie's SHA-256 digest (the CSRF token the console's pages
-- send is derived from the cookie, so nothing more is stored). A member's or a key's sessions end when it goes.
CREATE TABLE console_sessions (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    member_id   TEXT REFERENCES members(id) ON DELETE CASCADE,
    api_key_id  TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    label       TEXT NOT NULL,
    client_addr TEXT,
    user_agent  TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_member ON console_sessions (member_id);

-- Sign-ins in progress at the provider: the state's digest, the nonce the ID token must carry,
-- and the PKCE verifier (sealed). Each works once.
CREATE TABLE sign_in_states (
    state_hash             TEXT PRIMARY KEY,
    nonce                  TEXT NOT NULL,
    code_verifier_sealed   TEXT NOT NULL,
    id                     TEXT NOT NULL,
    expires_at             INTEGER NOT NULL
);

-- Every node's heartbeat, for the console's view of the installation.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    version      TEXT NOT NULL,
    hostname     TEXT,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

-- The console counts dead deliveries: a partial index holds only those.
CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';
