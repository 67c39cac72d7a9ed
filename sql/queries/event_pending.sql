-- The owner of the subscription of event $1 while it is still in the queue (pending, or
-- parked); NULL if it is not. An orphan's owner is 0, as in archived_event_subscription.sql.
SELECT (SELECT CASE WHEN COALESCE((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'owner_dropped')::boolean,
                                  false)
                    THEN 0::pg_catalog.oid ELSE s.owner::pg_catalog.oid END
          FROM webhook._event_queue q
          JOIN webhook._subscriptions s ON s.id = q.subscription_id
         WHERE q.id = $1)
