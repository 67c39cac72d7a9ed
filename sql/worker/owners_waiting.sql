-- The owners with work waiting for the runner, in OID order: the owners of the subscriptions
-- whose callbacks are waiting (those that still have a callback and an owner: the others' call
-- nothing),
-- and of those whose running backfill has a chunk due. A runner process runs one owner's code
-- only, and hands over to a fresh process for the next owner's (see
-- src/worker/callbacks/turn.rs). The subscriptions with callbacks are found as in
-- pending_callbacks.sql.
WITH RECURSIVE waiting(id) AS (
    (SELECT c.subscription_id FROM webhook._callback_queue c
      ORDER BY c.subscription_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.subscription_id FROM webhook._callback_queue c
             WHERE c.subscription_id OPERATOR(pg_catalog.>) w.id
             ORDER BY c.subscription_id LIMIT 1)
      FROM waiting w
     WHERE w.id IS NOT NULL
)
SELECT s.owner::pg_catalog.oid
  FROM waiting w
  JOIN webhook._subscriptions s ON s.id = w.id
 WHERE s.callback IS NOT NULL AND NOT s.owner_dropped
   -- Bound here (see pending_callbacks.sql).
   AND s.callback_bound_in OPERATOR(pg_catalog.=) webhook._binding_key()
UNION
SELECT s.owner::pg_catalog.oid
  FROM webhook._backfills b
  JOIN webhook._subscriptions s ON s.id = b.subscription_id
 WHERE b.state = 'running'
   AND (b.retry_at IS NULL OR b.retry_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp())
 ORDER BY 1
