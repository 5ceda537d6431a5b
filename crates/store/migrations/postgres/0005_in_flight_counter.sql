-- Each connection counts its deliveries in flight, kept in the same transactions that move a
-- delivery into or out of 'delivering'. Claims used to count them by scanning the queue's
-- 'delivering' entries, which on PostgreSQL include every dead row version until vacuum removes
-- them: each claim got slower as history grew. The counter is one row per connection, updated
-- in place (HOT: no index names it).
ALTER TABLE connections ADD COLUMN in_flight BIGINT NOT NULL DEFAULT 0;
UPDATE connections c SET in_flight = (SELECT COUNT(*) FROM deliveries d WHERE d.connection_id = c.id AND d.status = 'delivering');
