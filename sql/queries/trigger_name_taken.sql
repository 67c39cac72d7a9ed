-- A row if table $1 already has a trigger named $2.
SELECT 1 FROM pg_catalog.pg_trigger
 WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgname OPERATOR(pg_catalog.=) $2
