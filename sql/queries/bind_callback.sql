-- Subscription $1's callback, function $2, as 0.3.0 keeps it: by signature, and by OID with
-- where that OID was read (see _subscriptions.callback_oid in schema.sql).
UPDATE webhook._subscriptions
   SET callback = webhook._callback_signature($2::pg_catalog.oid),
       callback_oid = $2::pg_catalog.oid,
       callback_bound_in = webhook._binding_key()
 WHERE id OPERATOR(pg_catalog.=) $1
