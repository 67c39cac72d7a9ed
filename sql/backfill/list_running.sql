-- The running backfills of owner $1's subscriptions (and of subscriptions gone, whose chunks
-- run no one's code), oldest first, with the seconds until their next chunk is due (0: now)
-- and the chunks that failed in a row.
-- A runner process runs one owner's chunks only (see src/worker/callbacks/turn.rs).
SELECT b.id,
       pg_catalog.date_part('epoch', GREATEST(b.retry_at OPERATOR(pg_catalog.-)
           pg_catalog.clock_timestamp(), '0'::pg_catalog.interval)),
       b.failures
  FROM webhook._backfills b
  LEFT JOIN webhook._subscriptions s ON s.id = b.subscription_id
 WHERE b.state = 'running'
   AND (s.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1 OR s.id IS NULL)
 ORDER BY b.id
