-- The events of these ordered subscriptions ($1, with $2 the most to return for each) that may
-- go now: among each one's first 1000 queued events in id order (id order is commit order per
-- order key, see capture.rs), those that are due and have no earlier event of the same order
-- key (0 for `ordered => true`: the whole subscription is one key). A head in flight is
-- returned too (the worker skips what it owns), and holds back the rest of its key; so does any
-- other event of its key in flight ($4: the events the worker has out) — a replayed event keeps
-- its id, so it can become its key's head while a later event of the key is out. Found through
-- the partial indexes on ordered events. Images larger than $3 are not read (see
-- claim_new.sql).
SELECT q.txid::pg_catalog.text::pg_catalog.int8, q.id, q.subscription_id, q.op, q.table_schema,
       q.table_name,
       CASE WHEN q.payload_bytes <= $3 THEN q.record::pg_catalog.text END,
       CASE WHEN q.payload_bytes <= $3 THEN q.old_record::pg_catalog.text END, q.attempts,
       q.series_start, pg_catalog.to_jsonb(q.created_at) #>> '{}', q.payload_bytes, q.batch
  FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.int4[]) AS s(id, most)
 CROSS JOIN LATERAL (
       SELECT h.*
         FROM (SELECT c.* FROM webhook._event_queue c
                WHERE c.ordered AND c.subscription_id = s.id
                ORDER BY c.id LIMIT 1000) h
        WHERE (h.next_attempt_at IS NULL OR h.next_attempt_at <= pg_catalog.now())
          AND NOT EXISTS (SELECT 1 FROM webhook._event_queue e
                           WHERE e.ordered AND e.subscription_id = h.subscription_id
                             AND e.order_key = h.order_key AND e.id < h.id)
          AND NOT EXISTS (SELECT 1 FROM webhook._event_queue f
                           WHERE f.ordered AND f.subscription_id = h.subscription_id
                             AND f.order_key = h.order_key
                             AND f.id = ANY ($4::pg_catalog.int8[]) AND f.id <> h.id)
        ORDER BY h.id
        LIMIT s.most) q
