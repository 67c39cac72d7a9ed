-- The head of each of these ordered subscriptions ($1), if it is due: one event each, found
-- through the partial index, and nothing behind a head that waits for a retry. Images larger
-- than $2 are not read (see claim_new.sql).
SELECT q.txid::pg_catalog.text::pg_catalog.int8, q.id, q.subscription_id, q.op, q.table_schema,
       q.table_name,
       CASE WHEN q.payload_bytes <= $2 THEN q.record::pg_catalog.text END,
       CASE WHEN q.payload_bytes <= $2 THEN q.old_record::pg_catalog.text END, q.attempts,
       q.series_start, pg_catalog.to_json(q.created_at) #>> '{}', q.payload_bytes
  FROM unnest($1::pg_catalog.int4[]) AS s(id)
 CROSS JOIN LATERAL (SELECT h.* FROM webhook._event_queue h
                      WHERE h.ordered AND h.subscription_id = s.id
                      ORDER BY h.id LIMIT 1) q
 WHERE q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now()
