-- Marks a subscription ($1) unsubscribed with a reason ($2), unless it already is; returns its
-- id when it marked it.
UPDATE webhook._subscriptions
   SET status = 'unsubscribed', status_reason = $2
 WHERE id OPERATOR(pg_catalog.=) $1
   AND status OPERATOR(pg_catalog.<>) 'unsubscribed'
RETURNING id
