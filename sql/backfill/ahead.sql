-- How many of subscription $1's BACKFILL events are still queued, counting to $2 at most: a
-- backfill queues no further chunk while its receiver is that far behind.
SELECT pg_catalog.count(*)
  FROM (SELECT 1 FROM webhook._event_queue q
         WHERE q.subscription_id = $1 AND q.op = 'BACKFILL' LIMIT $2) a
