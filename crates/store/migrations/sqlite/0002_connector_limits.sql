-- SaaS connectors: a per-connection rate limit (deliveries started per minute; NULL = none), and
-- the request each attempt sent (secrets removed), shown in the delivery history.
ALTER TABLE connections ADD COLUMN rate_limit_per_minute INTEGER;
ALTER TABLE attempts ADD COLUMN request_excerpt TEXT;
