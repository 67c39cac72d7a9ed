-- Of the functions $1, those whose owner does not have the privileges of role $2 (the role a
-- user-written query runs as): code whose author could not run it with that role's rights
-- himself. Each with its signature, schema and name (to compare with the names the query's
-- text spells out) and its owner. See src/checked_sql.rs.
SELECT p.oid,
       p.oid::pg_catalog.regprocedure::pg_catalog.text,
       n.nspname::pg_catalog.text,
       p.proname::pg_catalog.text,
       pg_catalog.pg_get_userbyid(p.proowner)::pg_catalog.text
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
 WHERE p.oid OPERATOR(pg_catalog.=) ANY ($1)
   AND NOT pg_catalog.pg_has_role(p.proowner, $2, 'USAGE')
 ORDER BY p.oid
