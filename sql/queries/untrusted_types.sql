-- Of the types $1, the first whose owner does not have the privileges of role $2 (the role a
-- user-written query runs as): a role who may make casts of that type at any time. With its
-- name and its owner. See src/looked_up_types.rs.
SELECT pg_catalog.format_type(t.oid, NULL),
       pg_catalog.pg_get_userbyid(t.typowner)::pg_catalog.text
  FROM pg_catalog.pg_type AS t
 WHERE t.oid OPERATOR(pg_catalog.=) ANY ($1)
   AND NOT pg_catalog.pg_has_role(t.typowner, $2, 'USAGE')
 ORDER BY t.oid
 LIMIT 1
