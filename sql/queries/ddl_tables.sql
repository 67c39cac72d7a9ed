-- The tables the DDL command that fired webhook_on_ddl created or altered.
SELECT DISTINCT c.objid
  FROM pg_catalog.pg_event_trigger_ddl_commands() c
 WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
