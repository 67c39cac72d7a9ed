-- Subscription $1's table and owner.
SELECT target::pg_catalog.oid, owner::pg_catalog.oid FROM webhook._subscriptions WHERE id = $1
