-- Each connection's circuit breaker: its settings (JSON; NULL: the defaults) and its state, shared
-- by every node. `circuit_cooldown_ms` is the last cooldown (failed probes double it);
-- `circuit_successes` counts the probes that succeeded in a row while half open.
ALTER TABLE connections ADD COLUMN circuit_breaker TEXT;
ALTER TABLE connections ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed';
ALTER TABLE connections ADD COLUMN circuit_since BIGINT;
ALTER TABLE connections ADD COLUMN circuit_reason TEXT;
ALTER TABLE connections ADD COLUMN circuit_retry_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN circuit_cooldown_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN circuit_successes BIGINT NOT NULL DEFAULT 0;
