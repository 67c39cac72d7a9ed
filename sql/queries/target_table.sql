-- The relation a subscription would watch ($1): its kind, schema, name and persistence (no row
-- if there is no such relation).
SELECT c.relkind::text, n.nspname::text, c.relname::text, c.relpersistence::text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = $1
