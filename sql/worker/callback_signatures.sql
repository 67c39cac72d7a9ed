-- Callbacks bound here whose function was renamed or moved since (ALTER FUNCTION): their
-- signature follows it, so that a pg_upgrade or a restore binds them again to the same function.
WITH here AS MATERIALIZED (SELECT webhook._binding_key() AS key)
UPDATE webhook._subscriptions s
   SET callback = webhook._callback_signature(s.callback_oid)
  FROM here
 WHERE s.callback_bound_in OPERATOR(pg_catalog.=) here.key
   AND webhook._callback_signature(s.callback_oid) IS NOT NULL
   AND webhook._callback_signature(s.callback_oid) IS DISTINCT FROM s.callback
