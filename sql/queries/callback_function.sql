-- Function $1 as a subscription's callback: its signature, its kind, whether it takes one jsonb
-- argument and returns one value (not a set), and whether role $2 may execute it: EXECUTE on
-- it and USAGE on its schema, as calling it by name would need (it is called by OID, which
-- would skip the schema's check) (no row if there is no such function).
SELECT p.oid::regprocedure::text, p.prokind::text,
       p.pronargs = 1 AND p.proargtypes[0] = 'pg_catalog.jsonb'::pg_catalog.regtype
           AND NOT p.proretset,
       pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE')
           AND pg_catalog.has_schema_privilege($2, p.pronamespace, 'USAGE')
  FROM pg_catalog.pg_proc p WHERE p.oid = $1
