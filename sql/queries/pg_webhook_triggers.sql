-- Every trigger that runs one of pg_webhook's trigger functions ($1: their OIDs), optionally
-- only on some tables ($2, NULL: everywhere), with its arguments split out, and whether it
-- fires in a session of the default session_replication_role (tgenabled O or A). Matched by
-- the function's OID, never by the trigger's name: anyone may name a trigger
-- pg_webhook_1_insert.
SELECT t.oid, t.tgrelid, t.tgname::pg_catalog.text, t.tgtype::pg_catalog.int4, t.tgfoid,
       pg_catalog.format('%I.%I', n.nspname, c.relname),
       pg_catalog.encode(t.tgargs, 'hex'),
       t.tgenabled OPERATOR(pg_catalog.=) ANY (ARRAY['O', 'A']::pg_catalog."char"[])
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
   AND ($2::pg_catalog.oid[] IS NULL OR t.tgrelid OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.oid[]))
