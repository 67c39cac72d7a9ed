-- The tables whose triggers the DDL command that fired webhook_on_ddl created or replaced.
SELECT DISTINCT t.tgrelid
  FROM pg_catalog.pg_event_trigger_ddl_commands() c
  JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
 WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
