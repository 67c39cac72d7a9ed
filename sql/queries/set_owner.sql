-- Hands subscription $1 to role $2, if its owner is still $3 (the role whose loss was checked).
UPDATE webhook._subscriptions
   SET owner = $2::pg_catalog.oid::pg_catalog.regrole, owner_dropped = false
 WHERE id OPERATOR(pg_catalog.=) $1 AND owner::pg_catalog.oid OPERATOR(pg_catalog.=) $3
