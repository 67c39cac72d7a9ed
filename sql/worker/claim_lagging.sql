-- New events of one subscription ($1) that the worker's cursor passed while the subscription
-- was slow (see plan.rs, `share`): those after ($2 txid, $3 id) up to ($4 txid, $5 id), in key
-- order, at most $6, and no more than $8 bytes of row images (the first one always), leaving
-- out the events the worker has in flight ($10). Due retries and parked events are not among
-- them (they have a next_attempt_at), nor ordered ones. $7, $9 and the slice marker as in
-- claim_new.sql ($4 and $6 there), and so are the byte budget and the last column (the first
-- row past the budget comes without images; without such a row, fewer than $6 rows means none
-- are left). Walks the key index between the two keys, which the cursor has read already.
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $9 THEN e.record::pg_catalog.text END,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $9 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline, e.room, e.tid
  FROM (SELECT p.*, webhook._claim_room(COALESCE(p.payload_bytes, 0), $8) AS room
          FROM (SELECT q.ctid AS tid, q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id,
                       q.subscription_id, q.op, q.table_schema, q.table_name, q.record,
                       q.old_record, q.attempts, q.series_start, q.created_at, q.payload_bytes,
                       q.batch, q.timeline, q.tx_timeline
                  FROM webhook._event_queue q
                 WHERE (q.txid, q.id) > ($2::pg_catalog.text::pg_catalog.xid8, $3)
                   AND (q.txid, q.id) <= ($4::pg_catalog.text::pg_catalog.xid8, $5)
                   AND q.subscription_id = $1
                   AND q.next_attempt_at IS NULL
                   AND NOT q.ordered
                   AND q.id <> ALL ($10::pg_catalog.int8[])
                   /*slice*/
                 ORDER BY q.txid, q.id
                 LIMIT $6) p) e
 WHERE e.room < 2
