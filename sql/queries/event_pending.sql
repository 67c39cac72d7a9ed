-- The owner of the subscription of event $1 while it is still in the queue (pending, or
-- parked); NULL if it is not.
SELECT (SELECT s.owner::pg_catalog.oid
          FROM webhook._event_queue q
          JOIN webhook._subscriptions s ON s.id = q.subscription_id
         WHERE q.id = $1)
