-- Rate-limit buckets the nodes of a cluster share (GCRA: when each bucket is full again, in
-- milliseconds). Unlogged: after a crash the buckets start full, which only forgives some requests.
CREATE UNLOGGED TABLE rate_buckets (
    key  TEXT COLLATE "C" PRIMARY KEY,
    tat  DOUBLE PRECISION NOT NULL,
    cost DOUBLE PRECISION NOT NULL DEFAULT 0   -- the last sync's addition (the upsert reads it back)
);

-- A connection's pace across the cluster: the earliest start (ms, fractional) of its next
-- delivery under `rate_limit_per_minute`, and until when a destination's "too many requests"
-- holds it. Claims read and move both under the connection's row lock.
ALTER TABLE connections ADD COLUMN next_start_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN held_until BIGINT NOT NULL DEFAULT 0;

-- Deliveries per workspace per day: created (with their events), and finished by outcome (on
-- the day of the attempt that ended them).
ALTER TABLE usage_days ADD COLUMN deliveries BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_days ADD COLUMN succeeded BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_days ADD COLUMN dead BIGINT NOT NULL DEFAULT 0;

-- Usage reads sum the days of a month (usage_months stays the row ingest locks for the monthly
-- cap, with the same count); the installation's month reads the days of every workspace.
CREATE INDEX usage_days_by_day ON usage_days (day);
