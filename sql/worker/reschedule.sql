-- Schedules the next attempt of events (keyed by txid $1 and id $2) that failed and will be
-- retried: attempts so far ($3), delay in ms ($4), the error to show ($5), the batch it was
-- sent in ($6, NULL: none), which its retry goes out in again.
UPDATE webhook._event_queue q
   SET attempts = u.attempts,
       next_attempt_at = pg_catalog.now() + u.delay_ms * interval '1 millisecond',
       last_error = u.last_error,
       batch = u.batch
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[], $3::pg_catalog.int4[],
                         $4::pg_catalog.int8[], $5::pg_catalog.text[], $6::pg_catalog.int8[])
       AS u(txid, id, attempts, delay_ms, last_error, batch)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
