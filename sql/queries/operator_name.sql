-- Operator $1's schema and name, to compare with the operators a query's text names
-- schema-qualified (OPERATOR(schema.op)). See src/checked_sql.rs.
SELECT n.nspname::pg_catalog.text, o.oprname::pg_catalog.text
  FROM pg_catalog.pg_operator AS o
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
 WHERE o.oid OPERATOR(pg_catalog.=) $1
