-- Every id column compares bytewise (COLLATE "C"), like the primary keys it refers to. With the
-- database's default collation on one side of a join and "C" on the other, PostgreSQL cannot use
-- an index on the column for the join: the claim's per-connection probe of the due queue became a
-- scan of every due delivery of every connection, so one connection's backlog slowed all others.
ALTER TABLE deliveries ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE deliveries ALTER COLUMN event_id TYPE TEXT COLLATE "C";
ALTER TABLE deliveries ALTER COLUMN rule_id TYPE TEXT COLLATE "C";
ALTER TABLE deliveries ALTER COLUMN connection_id TYPE TEXT COLLATE "C";
ALTER TABLE attempts ALTER COLUMN delivery_id TYPE TEXT COLLATE "C";
ALTER TABLE attempts ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE events ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE rules ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE rules ALTER COLUMN connection_id TYPE TEXT COLLATE "C";
ALTER TABLE connections ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE publishable_keys ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE sessions ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE idempotency_keys ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE idempotency_keys ALTER COLUMN event_id TYPE TEXT COLLATE "C";
ALTER TABLE oauth_states ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE oauth_states ALTER COLUMN workspace_id TYPE TEXT COLLATE "C";
ALTER TABLE oauth_states ALTER COLUMN connection_id TYPE TEXT COLLATE "C";
