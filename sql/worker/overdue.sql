-- Active subscriptions failing for longer than $1 seconds, with what their latest error was:
-- the status answered, or no answer. Not the error itself: it goes in status_reason, which every
-- reader of the table sees, and an answer's body (a 404 page quoting the URL's path) or a token
-- endpoint's error is shown to those who manage the subscription only (webhook.attempts).
SELECT s.id, s.name, s.failing_since::pg_catalog.text,
       (SELECT CASE WHEN q.last_error OPERATOR(pg_catalog.~) '^HTTP [0-9]{3}'
                    THEN pg_catalog.substring(q.last_error, '^HTTP [0-9]{3}')
                    WHEN q.last_error IS NOT NULL
                    THEN 'no answer (webhook.attempts shows why to its owner)' END
          FROM webhook._event_queue q WHERE q.subscription_id = s.id
         ORDER BY q.next_attempt_at DESC NULLS LAST LIMIT 1)
  FROM webhook._subscriptions s
 WHERE s.status = 'active' AND s.failing_since < pg_catalog.now() - $1 * interval '1 second'
