-- A connection's deliveries in flight are now two counters: `connections.in_flight` counts the
-- leases claims have taken (claims add to it, under the connection's row lock, as before), and
-- `connection_frees.freed` counts the leases that ended (records, releases and recoveries add to
-- it). In flight is their difference. Records used to lower `connections.in_flight` itself, so
-- every record batch waited for the connection row that a claim held locked, and every claim
-- skipped a connection a record held: the two took turns. Now a record never touches the row a
-- claim locks. Both only grow; the existing counts carry over as they are (nothing freed yet).
CREATE TABLE connection_frees (
    connection_id TEXT COLLATE "C" PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    freed         BIGINT NOT NULL
) WITH (fillfactor = 50);
