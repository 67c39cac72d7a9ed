-- Replaces a subscription's ($1) TLS client certificate ($2) and key ($3); NULLs remove them.
UPDATE webhook._subscriptions SET client_cert = $2, client_key = $3 WHERE id = $1
