-- A connection's pace: the earliest start (ms, fractional) of its next delivery under
-- `rate_limit_per_minute`, and until when a destination's "too many requests" holds it.
ALTER TABLE connections ADD COLUMN next_start_at REAL NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN held_until INTEGER NOT NULL DEFAULT 0;

-- Deliveries per workspace per day: created (with their events), and finished by outcome (on
-- the day of the attempt that ended them).
ALTER TABLE usage_days ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_days ADD COLUMN succeeded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_days ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;

-- The month is the sum of its days: the embedded store no longer writes usage_months (one page
-- less per ingest commit). The installation's month reads the days of every workspace.
CREATE INDEX usage_days_by_day ON usage_days (day);
