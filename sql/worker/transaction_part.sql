-- The events of part $3 of a transaction ($1 txid) for a subscription ($2), in statement order,
-- if the part is due (its events share their attempts). Images larger than $4 are not read.
-- The ctid comes last, for recording the outcome where the row is (see finish.sql): by key
-- alone, thousands of events were joined to the queue by a plan made while its statistics
-- said it was empty, which read all of it for each event (a worker stuck for minutes on one
-- part of a transaction of a million events).
SELECT q.txid::pg_catalog.text::pg_catalog.int8, q.id, q.subscription_id, q.op, q.table_schema,
       q.table_name,
       CASE WHEN q.payload_bytes <= $4 THEN q.record::pg_catalog.text END,
       CASE WHEN q.payload_bytes <= $4 THEN q.old_record::pg_catalog.text END, q.attempts,
       q.series_start, q.created_at, q.payload_bytes, q.batch, q.timeline, q.tx_timeline, q.ctid
  FROM webhook._event_queue q
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2 AND q.part = $3
   AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now())
   -- Before the first event of a later part: parts are runs of ids, and this one is the lowest
   -- queued, so the key index is walked over it alone, not over the rest of the transaction
   -- (a million events' 250 parts each walked all the events left).
   AND q.id OPERATOR(pg_catalog.<) COALESCE(
           (SELECT pg_catalog.min(l.id) FROM webhook._event_queue l
             WHERE l.txid = $1::pg_catalog.text::pg_catalog.xid8 AND l.subscription_id = $2
               AND l.part OPERATOR(pg_catalog.>) $3),
           9223372036854775807)
 ORDER BY q.id
