-- Callbacks bound in another copy of this database or another cluster (callback_bound_in is
-- not webhook._binding_key(): a restore, or pg_upgrade, which keeps the rows but not function
-- OIDs): bound again to the function their signature names now, if it takes one jsonb argument,
-- returns one value and belongs to the role that owned the function bound before
-- (callback_owner, where known: another role that may create functions in its schema could
-- have made one of the signature after the original was dropped or renamed, to run as the
-- subscription's owner), else to none (OID 0: its callbacks fail, saying the function is gone).
-- Not whether the owner may call it: each call checks that (EXECUTE, and USAGE on its schema:
-- src/worker/callbacks/call.rs), and pg_restore grants privileges last, after the data, the
-- indexes and the triggers, whose creation makes the worker load the subscriptions meanwhile; an
-- orphan's new owner is checked by set_owner(). Returns each one's subscription, signature and
-- whether a function was found; a worker that finds one bound meanwhile by another leaves it.
-- Not those whose row another transaction holds: bound at a later load (the callback runner and
-- set_owner() wait), rather than this worker's claims waiting for it, and every subscription's
-- delivery with them.
WITH here AS MATERIALIZED (SELECT webhook._binding_key() AS key),
found AS (
    SELECT s.id, s.name, s.callback,
           (SELECT p.oid
              FROM pg_catalog.pg_proc p
             -- Not one kept as its function's OID, in text (dropped before the update to 0.3.0,
             -- or in a dump made before it): no signature, it names no function here, and
             -- to_regprocedure() would fail on it, and so every load of the subscriptions.
             WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(
                       CASE WHEN s.callback OPERATOR(pg_catalog.~~) '%)' THEN s.callback END)
               AND p.pronargs OPERATOR(pg_catalog.=) 1
               AND p.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.jsonb'::pg_catalog.regtype
               AND NOT p.proretset AND p.prokind OPERATOR(pg_catalog.=) 'f'
               -- Or a superuser's, which no other role can make (pg_restore --no-owner gives
               -- every function to the role restoring, a superuser where pg_webhook is made).
               AND (s.callback_owner IS NULL
                    OR p.proowner OPERATOR(pg_catalog.=) s.callback_owner::pg_catalog.oid
                    OR EXISTS (SELECT FROM pg_catalog.pg_authid a
                                WHERE a.oid OPERATOR(pg_catalog.=) p.proowner AND a.rolsuper))
               -- An orphan's role is gone (webhook.set_owner() checks its new owner).
               AND (s.owner_dropped
                    OR EXISTS (SELECT FROM pg_catalog.pg_authid a
                                WHERE a.oid OPERATOR(pg_catalog.=) s.owner))) AS oid
      FROM webhook._subscriptions s, here
     WHERE s.callback IS NOT NULL
       AND s.callback_bound_in IS DISTINCT FROM here.key
       FOR UPDATE OF s SKIP LOCKED
)
UPDATE webhook._subscriptions s
   SET callback_oid = COALESCE(f.oid, 0), callback_bound_in = here.key,
       -- Known from now on (a dump made before 0.3.0 does not say).
       callback_owner = COALESCE((SELECT p.proowner FROM pg_catalog.pg_proc p
                                   WHERE p.oid OPERATOR(pg_catalog.=) f.oid),
                                 s.callback_owner::pg_catalog.oid)
  FROM found f, here
 WHERE s.id OPERATOR(pg_catalog.=) f.id
   AND s.callback_bound_in IS DISTINCT FROM here.key
RETURNING f.name, f.callback, f.oid IS NOT NULL
