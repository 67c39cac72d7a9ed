-- Replaces a subscription's ($1) OAuth 2.0 client credentials ($2, JSON text); NULL removes them.
UPDATE webhook._subscriptions SET auth = $2::pg_catalog.jsonb WHERE id = $1
