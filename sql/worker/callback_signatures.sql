-- Callbacks bound here whose function was renamed, moved or given to another role since (ALTER
-- FUNCTION): their signature and owner follow it, so that a pg_upgrade or a restore binds them
-- again to the same function. Not those whose row another transaction holds (a pause not
-- committed yet): followed at a later load, rather than this worker's claims waiting for it,
-- and every subscription's delivery with them.
WITH here AS MATERIALIZED (SELECT webhook._binding_key() AS key),
bound AS (
    SELECT s.id, latest.signature, p.proowner
      FROM webhook._subscriptions s
      JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) s.callback_oid
     CROSS JOIN here
     -- Worked out once per subscription (this runs at every load of the subscriptions).
     CROSS JOIN LATERAL (SELECT webhook._callback_signature(s.callback_oid) AS signature) latest
     WHERE s.callback_bound_in OPERATOR(pg_catalog.=) here.key
       -- Only those that changed are locked (and written).
       AND (latest.signature IS DISTINCT FROM s.callback
            OR p.proowner IS DISTINCT FROM s.callback_owner::pg_catalog.oid)
       FOR UPDATE OF s SKIP LOCKED
)
UPDATE webhook._subscriptions s
   SET callback = b.signature, callback_owner = b.proowner
  FROM bound b
 WHERE s.id OPERATOR(pg_catalog.=) b.id
