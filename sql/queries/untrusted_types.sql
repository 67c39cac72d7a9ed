-- The types $1, each with its name, its owner, and whether that owner has the privileges of
-- role $2 (the role a user-written query runs as; a type's owner may make its casts at any
-- time). A type the statement's snapshot does not see yet (made since) has no row: the
-- caller refuses it. See src/looked_up_types.rs.
SELECT t.oid,
       pg_catalog.format_type(t.oid, NULL),
       pg_catalog.pg_get_userbyid(t.typowner)::pg_catalog.text,
       pg_catalog.pg_has_role(t.typowner, $2, 'USAGE')
  FROM pg_catalog.pg_type AS t
 WHERE t.oid OPERATOR(pg_catalog.=) ANY ($1)
 ORDER BY t.oid
