-- The owners of the subscriptions whose callbacks are waiting (those that still have a
-- callback: the others' call nothing), in OID order. A callback runner process calls one
-- owner's callbacks only, and hands over to a fresh process for the next owner's (see
-- src/worker/callbacks/turn.rs). The subscriptions are found as in pending_callbacks.sql.
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
SELECT DISTINCT s.owner::pg_catalog.oid
  FROM waiting w
  JOIN webhook._subscriptions s ON s.id = w.id
 WHERE s.callback IS NOT NULL
 ORDER BY 1
