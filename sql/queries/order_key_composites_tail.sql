-- The tail of order_key_composites.sql: for each type reached, a key column, the type's name
-- and its owner (for a table's row type, the table's).
SELECT DISTINCT ON (t.oid) r.col, t.oid::pg_catalog.regtype::pg_catalog.text, c.relowner
  FROM reach r
  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) r.typ
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.typrelid
 ORDER BY t.oid, r.col
