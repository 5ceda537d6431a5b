-- When a cancel was asked for a delivery: a waiting one is `cancelled` at once; one in flight
-- keeps `delivering` until its attempt ends, which then cancels it instead of retrying it.
ALTER TABLE deliveries ADD COLUMN cancelled_at INTEGER;
