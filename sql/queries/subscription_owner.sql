-- Subscription $1's owner.
SELECT s.owner::pg_catalog.oid FROM webhook._subscriptions s
 WHERE s.id OPERATOR(pg_catalog.=) $1
