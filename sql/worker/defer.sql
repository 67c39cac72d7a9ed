-- Puts events (keyed by txid $1 and id $2) back for later ($3 microseconds after this
-- transaction's start, now()) without counting an attempt: over their subscription's own
-- concurrency or rate limit, or held for a batch to fill (every event of one wait then comes due
-- at the same instant). Returns the ids it put back. A row another transaction holds (an
-- unsubscribe discarding the queue, left open) is not waited for: it stays as it was, and the
-- claim reads it again later (waiting, every claim waited until lock_timeout, failed and began
-- again, for as long as that transaction stayed open).
UPDATE webhook._event_queue q
   SET next_attempt_at = pg_catalog.now() + u.delay_us * interval '1 microsecond'
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[], $3::pg_catalog.int8[])
       AS u(txid, id, delay_us)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
   AND q.ctid = ANY (ARRAY(SELECT l.ctid
                             FROM webhook._event_queue l
                             JOIN unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[]) AS v(txid, id)
                               ON l.txid = v.txid::pg_catalog.text::pg_catalog.xid8
                              AND l.id = v.id
                              FOR NO KEY UPDATE OF l SKIP LOCKED))
RETURNING q.id
