-- Running backfill $1, its subscription, and why the subscription's owner may not read the
-- table (NULL: it may, read at this statement's snapshot so a REVOKE committed before the chunk
-- is seen). The backfill's row is locked: a cancel waits for this chunk to commit, and a chunk
-- that starts after a cancel committed finds no row. No row: it is not running any more. A
-- NULL status: its subscription's row is gone (deleted by hand), and so is what it would send.
-- Last, the subscription's owner when it started.
SELECT b.subscription_id, b.filter, b.key_columns, b.last_key, s.status, s.name,
       s.target::pg_catalog.oid, o.denied, b.started_txid::pg_catalog.text,
       b.owner::pg_catalog.oid
  FROM webhook._backfills b
  LEFT JOIN webhook._subscriptions s ON s.id = b.subscription_id
  LEFT JOIN webhook._owner_access o ON o.id = b.subscription_id
 WHERE b.id = $1 AND b.state = 'running'
   FOR UPDATE OF b
