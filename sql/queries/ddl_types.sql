-- The types the DDL command that fired webhook_on_ddl altered: named as types, or through a
-- relation: a composite type (whose ALTER TYPE runs as an ALTER of its relation), or a table's
-- row type, which its columns make.
SELECT c.objid
  FROM pg_catalog.pg_event_trigger_ddl_commands() c
 WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
UNION
SELECT r.reltype
  FROM pg_catalog.pg_event_trigger_ddl_commands() c
  JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) c.objid
 WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND r.reltype OPERATOR(pg_catalog.<>) 0
