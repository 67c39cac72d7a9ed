-- The live subscription named $1: its id, owner and status (no row if there is none).
SELECT id, owner::oid, status FROM webhook._subscriptions
 WHERE name = $1 AND status <> 'unsubscribed'
