-- The operator console. Members are people who sign in (through the operator's OpenID Connect
-- provider); `removed_at` keeps a removed member out even while the provider would still let
-- them in, until an owner adds them again.
CREATE TABLE members (
    id              TEXT COLLATE "C" PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT,
    role            TEXT NOT NULL,
    subject         TEXT,
    created_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT,
    removed_at      BIGINT
);

-- Signed-in console sessions, by the cookie's SHA-256 digest (the CSRF token the console's pages
-- send is derived from the cookie, so nothing more is stored). A member's or a key's sessions end when it goes.
CREATE TABLE console_sessions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    member_id   TEXT COLLATE "C" REFERENCES members(id) ON DELETE CASCADE,
    api_key_id  TEXT COLLATE "C" REFERENCES api_keys(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    label       TEXT NOT NULL,
    client_addr TEXT,
    user_agent  TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_member ON console_sessions (member_id);

-- Sign-ins in progress at the provider: the state's digest, the nonce the ID token must carry,
-- and the PKCE verifier (sealed). Each works once.
CREATE TABLE sign_in_states (
    state_hash             TEXT COLLATE "C" PRIMARY KEY,
    nonce                  TEXT NOT NULL,
    code_verifier_sealed   TEXT NOT NULL,
    id                     TEXT COLLATE "C" NOT NULL,
    expires_at             BIGINT NOT NULL
);

-- Every node's heartbeat, for the console's view of the installation.
CREATE TABLE nodes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    role         TEXT NOT NULL,
    version      TEXT NOT NULL,
    hostname     TEXT,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- The console counts dead deliveries: a partial index holds only those.
CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';
