-- The deliveries table is a queue: every delivery's row is updated several times within seconds
-- (claimed, recorded, perhaps retried), and a status change is never a HOT update because the
-- queue's partial indexes name the status column. Dead row versions pile up in those indexes
-- faster than the default autovacuum thresholds (20% of the table) let them go, and stale
-- statistics on a fast-growing table make the planner misjudge the claim queries. Vacuum and
-- analyze it after 1% of its rows change; the same for events, whose rollup status is updated.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02)
