-- Hands subscription $1 to role $2.
UPDATE webhook._subscriptions SET owner = $2::pg_catalog.oid::pg_catalog.regrole
 WHERE id OPERATOR(pg_catalog.=) $1
