-- Plans, each workspace's plan and overrides, and usage counted with the events it counts.
CREATE TABLE plans (
    name        TEXT PRIMARY KEY,
    description TEXT,
    limits      TEXT NOT NULL,            -- JSON object: a limit left out is no limit
    from_config INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

ALTER TABLE workspaces ADD COLUMN plan TEXT;                       -- NULL: the default plan, if any
ALTER TABLE workspaces ADD COLUMN limit_overrides TEXT NOT NULL DEFAULT '{}';

-- Events accepted per workspace per calendar month (UTC), written in the ingest transaction.
CREATE TABLE usage_months (
    workspace_id TEXT NOT NULL,
    month        TEXT NOT NULL,           -- 2026-12
    events       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, month)
);

-- The same per day, for the usage series.
CREATE TABLE usage_days (
    workspace_id TEXT NOT NULL,
    day          TEXT NOT NULL,           -- 2026-12-01
    events       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, day)
);
