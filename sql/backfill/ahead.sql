-- How many of subscription $1's BACKFILL events are still queued, counting to $2 at most: a
-- backfill queues no further chunk while its receiver is that far behind. Its events were all
-- queued after the transaction that started it ($3), so only the queue's key range from there
-- is read, not an older backlog.
SELECT pg_catalog.count(*)
  FROM (SELECT 1 FROM webhook._event_queue q
         WHERE q.txid >= $3::pg_catalog.xid8
           AND q.subscription_id = $1 AND q.op = 'BACKFILL'
         LIMIT $2) a
