-- How many times in a row a delivery's lease was taken back from a node that stopped during its
-- attempt; at 3 the delivery is set aside as dead (no crash loop). Reset by a recorded attempt
-- and by replay.
ALTER TABLE deliveries ADD COLUMN lease_recoveries INTEGER NOT NULL DEFAULT 0;
