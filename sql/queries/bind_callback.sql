-- Subscription $1's callback, function $2, as 0.3.0 keeps it: by signature, and by OID with
-- where that OID was read, and by its owner (see _subscriptions.callback_oid in schema.sql).
UPDATE webhook._subscriptions
   SET callback = webhook._callback_signature($2::pg_catalog.oid),
       callback_oid = $2::pg_catalog.oid,
       callback_bound_in = webhook._binding_key(),
       callback_owner = (SELECT p.proowner FROM pg_catalog.pg_proc p
                          WHERE p.oid OPERATOR(pg_catalog.=) $2::pg_catalog.oid)
 WHERE id OPERATOR(pg_catalog.=) $1
