-- Puts events (keyed by txid $1 and id $2) back for later ($3 microseconds after this
-- transaction's start, now()) without counting an attempt: over their subscription's own
-- concurrency or rate limit, or held for a batch to fill (every event of one wait then comes due
-- at the same instant).
UPDATE webhook._event_queue q
   SET next_attempt_at = pg_catalog.now() + u.delay_us * interval '1 microsecond'
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[], $3::pg_catalog.int8[])
       AS u(txid, id, delay_us)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
