-- Retries (and deferred events) whose time has come, oldest first: at most $1, and no more
-- than $3 bytes of row images (the first one always). $2, $4 and the slice marker as in
-- claim_new.sql ($4 there is $6). As there, the second last column says what the row is: 0
-- taken, 1 the first row past the byte budget (returned without images), so the worker knows
-- the page was cut short by bytes and not read to the end of the due events (taken for their
-- end, it left the others' due events behind a limited subscription's large ones unread). The
-- ctid comes last, for recording the outcome (see finish.sql).
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $4 THEN e.record::pg_catalog.text END,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $4 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline, e.room, e.tid
  FROM (SELECT p.*, CASE WHEN p.bytes_before < $3 THEN 0 ELSE 1 END AS room,
               pg_catalog.row_number() OVER (PARTITION BY p.bytes_before < $3
                                             ORDER BY p.next_attempt_at, p.id) AS nth
          FROM (SELECT q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id, q.subscription_id, q.op,
               q.table_schema, q.table_name, q.record, q.old_record, q.attempts,
               q.series_start, q.created_at, q.payload_bytes, q.batch, q.timeline, q.tx_timeline,
               q.ctid AS tid, q.next_attempt_at,
               pg_catalog.sum(q.payload_bytes) OVER (ORDER BY q.next_attempt_at, q.id)
                   - q.payload_bytes AS bytes_before
          FROM webhook._event_queue q
         WHERE q.next_attempt_at <= pg_catalog.now()
           AND NOT q.ordered
           /*slice*/
         ORDER BY q.next_attempt_at, q.id
         LIMIT $1) p) e
 WHERE e.room = 0 OR e.nth = 1
 ORDER BY e.next_attempt_at, e.id
