-- A connection taken out of delivery: 'paused' by someone, or 'failing' when it kept failing past
-- the installation's limit (disabled). Its deliveries wait, spending no attempts, until it resumes.
ALTER TABLE connections ADD COLUMN inactive_reason TEXT;
ALTER TABLE connections ADD COLUMN inactive_since BIGINT;
-- Since when every attempt to it has failed (NULL once one succeeds).
ALTER TABLE connections ADD COLUMN failing_since BIGINT;
