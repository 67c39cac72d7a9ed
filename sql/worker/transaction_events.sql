-- Events of one transaction ($1 txid) for one subscription ($2) after id $3, in id (statement)
-- order, at most $4, for cutting the transaction into parts. Images larger than $5 are not read
-- (see claim_new.sql).
SELECT q.txid::pg_catalog.text::pg_catalog.int8, q.id, q.subscription_id, q.op, q.table_schema,
       q.table_name,
       CASE WHEN q.payload_bytes <= $5 THEN q.record::pg_catalog.text END,
       CASE WHEN q.payload_bytes <= $5 THEN q.old_record::pg_catalog.text END, q.attempts,
       q.series_start, q.created_at, q.payload_bytes, q.batch, q.timeline, q.tx_timeline
  FROM webhook._event_queue q
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2 AND q.id > $3
 ORDER BY q.id
 LIMIT $4
