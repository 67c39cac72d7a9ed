-- The relations $1, each with its schema and name, its owner's name, and whether that owner
-- has the privileges of role $2 (the role a user-written query runs as). A relation the
-- statement's snapshot does not see yet (made since) has no row: the caller refuses it. See
-- src/relation_code.rs.
SELECT c.oid,
       n.nspname::pg_catalog.text,
       c.relname::pg_catalog.text,
       pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text,
       pg_catalog.pg_has_role(c.relowner, $2, 'USAGE')
  FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1)
 ORDER BY c.oid
