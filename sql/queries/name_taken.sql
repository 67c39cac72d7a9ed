-- A row if a live subscription is already named $1.
SELECT 1 FROM webhook._subscriptions
 WHERE name = $1 AND status <> 'unsubscribed'
