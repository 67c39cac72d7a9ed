-- The functions $1, each with its signature, schema and name (to compare with the names the
-- query's text spells out), its owner (name, then OID), and whether that owner has the privileges of role $2
-- (the role a user-written query runs as); then the name of its language when that is a
-- procedural one (not internal, C or SQL), else NULL. A function the statement's snapshot does not see yet (made
-- since) has no row: the caller refuses it. See src/checked_sql.rs.
SELECT p.oid,
       p.oid::pg_catalog.regprocedure::pg_catalog.text,
       n.nspname::pg_catalog.text,
       p.proname::pg_catalog.text,
       pg_catalog.pg_get_userbyid(p.proowner)::pg_catalog.text,
       pg_catalog.pg_has_role(p.proowner, $2, 'USAGE'),
       p.proowner,
       CASE WHEN l.lanname OPERATOR(pg_catalog.<>) ALL (ARRAY['internal', 'c', 'sql']::pg_catalog.name[])
            THEN l.lanname::pg_catalog.text END
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
  JOIN pg_catalog.pg_language AS l ON l.oid OPERATOR(pg_catalog.=) p.prolang
 WHERE p.oid OPERATOR(pg_catalog.=) ANY ($1)
 ORDER BY p.oid
