-- Operational notifications (an outbox): written in the transaction of the change they report,
-- so a crash cannot lose one; the id, unique per change (per workspace and month for quotas), is
-- also the idempotency key of the event each becomes, so a crash cannot double one either.
-- Emitted rows are kept 40 days, so a monthly notice is not repeated within its month.
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    emitted_at   BIGINT
);
CREATE INDEX notifications_waiting ON notifications (created_at) WHERE emitted_at IS NULL;
