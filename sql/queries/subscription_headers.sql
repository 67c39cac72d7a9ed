-- A subscription's ($1) static request headers, as JSON text.
SELECT headers::pg_catalog.text FROM webhook._subscriptions WHERE id = $1
