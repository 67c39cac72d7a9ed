-- Notes that subscription $1's uid was made in this copy of the database (webhook._instance).
UPDATE webhook._subscriptions SET instance = webhook._instance_id()
 WHERE id OPERATOR(pg_catalog.=) $1
