-- Due events of the subscriptions $5, read when claim_scheduled.sql's page was full of events
-- of subscriptions that could start nothing (holding their share): those come first in due
-- order, and a backlog of them (a resumed subscription's parked events) hid the others'
-- retries until it was gone. Each subscription's due events through its own index range, at
-- most $6 of each (the matching element: its events in flight, which are read past as there,
-- and the room), taken in turns: every subscription's first, then every one's second, ... at
-- most $1 in all and $3 bytes of row images (the first one always). The turns are cut to $1
-- before the running byte sum, so the sort keeps $1 rows, however many were read. $2, $4 and
-- the slice marker as in claim_scheduled.sql, and so is the last column, the ctid.
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.payload_bytes <= $4 THEN e.record::pg_catalog.text END,
       CASE WHEN e.payload_bytes <= $4 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline, e.tid
  FROM (SELECT t.*,
               pg_catalog.sum(t.payload_bytes) OVER (ORDER BY t.turn, t.next_attempt_at, t.id)
                   - t.payload_bytes AS bytes_before
          FROM (SELECT d.*
                  FROM unnest($5::pg_catalog.int4[], $6::pg_catalog.int8[]) AS s(id, n)
                 CROSS JOIN LATERAL (
                       SELECT q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id,
                              q.subscription_id, q.op, q.table_schema, q.table_name, q.record,
                              q.old_record, q.attempts, q.series_start, q.created_at,
                              q.payload_bytes, q.batch, q.timeline, q.tx_timeline,
                              q.ctid AS tid, q.next_attempt_at,
                              pg_catalog.row_number() OVER (ORDER BY q.next_attempt_at, q.id)
                                  AS turn
                         FROM webhook._event_queue q
                        WHERE q.subscription_id = s.id
                          AND q.next_attempt_at <= pg_catalog.now()
                          AND NOT q.ordered
                          /*slice*/
                        ORDER BY q.next_attempt_at, q.id
                        LIMIT s.n) d
                 ORDER BY d.turn, d.next_attempt_at, d.id
                 LIMIT $1) t) e
 WHERE e.bytes_before < $3
