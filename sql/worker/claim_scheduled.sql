-- Retries (and deferred events) whose time has come, oldest first: at most $1, and no more
-- than $3 bytes of row images (the first one always). $2, $4 and the slice marker as in
-- claim_new.sql ($4 there is $6). The ctid comes last, for recording the outcome (see
-- finish.sql).
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.payload_bytes <= $4 THEN e.record::pg_catalog.text END,
       CASE WHEN e.payload_bytes <= $4 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline, e.tid
  FROM (SELECT q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id, q.subscription_id, q.op,
               q.table_schema, q.table_name, q.record, q.old_record, q.attempts,
               q.series_start, q.created_at, q.payload_bytes, q.batch, q.timeline, q.tx_timeline,
               q.ctid AS tid,
               pg_catalog.sum(q.payload_bytes) OVER (ORDER BY q.next_attempt_at, q.id)
                   - q.payload_bytes AS bytes_before
          FROM webhook._event_queue q
         WHERE q.next_attempt_at <= pg_catalog.now()
           AND NOT q.ordered
           /*slice*/
         ORDER BY q.next_attempt_at, q.id
         LIMIT $1) e
 WHERE e.bytes_before < $3
