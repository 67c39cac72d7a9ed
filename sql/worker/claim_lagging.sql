-- New events of one subscription ($1) that the worker's cursor passed while the subscription
-- was slow (see plan.rs, `share`): those after ($2 txid, $3 id) up to ($4 txid, $5 id), in key
-- order, at most $6, and no more than $8 bytes of row images (the first one always), leaving
-- out the events the worker has in flight ($10). Due retries and parked events are not among
-- them (they have a next_attempt_at), nor ordered ones. $7, $9 and the slice marker as in
-- claim_new.sql ($4 and $6 there), and so is the last column: how many events the page held
-- before the byte budget cut it (fewer than $6: none are left). Walks the key index between
-- the two keys, which the cursor has read already.
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.payload_bytes <= $9 THEN e.record::pg_catalog.text END,
       CASE WHEN e.payload_bytes <= $9 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       pg_catalog.to_jsonb(e.created_at) #>> '{}', e.payload_bytes, e.batch, e.candidates
  FROM (SELECT p.*,
               pg_catalog.sum(p.payload_bytes) OVER (ORDER BY p.xid, p.id) - p.payload_bytes
                   AS bytes_before,
               pg_catalog.count(*) OVER () AS candidates
          FROM (SELECT q.txid AS xid, q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id,
                       q.subscription_id, q.op, q.table_schema, q.table_name, q.record,
                       q.old_record, q.attempts, q.series_start, q.created_at, q.payload_bytes,
                       q.batch
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
 WHERE e.bytes_before < $8
