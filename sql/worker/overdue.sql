-- Active subscriptions failing for longer than $1 seconds, with their latest error.
SELECT s.id, s.name, s.failing_since::pg_catalog.text,
       (SELECT q.last_error FROM webhook._event_queue q WHERE q.subscription_id = s.id
         ORDER BY q.next_attempt_at DESC NULLS LAST LIMIT 1)
  FROM webhook._subscriptions s
 WHERE s.status = 'active' AND s.failing_since < pg_catalog.now() - $1 * interval '1 second'
