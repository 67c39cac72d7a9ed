-- The row types of the relations (tables, composite types) that the command firing
-- webhook_on_sql_drop dropped a column or attribute from, not dropped whole: a cascade from
-- a domain or type (DROP DOMAIN ... CASCADE) takes an attribute of a composite type, or a
-- column of a table whose row type a key column's type reaches, which changes that value's
-- hash as ALTER TYPE ... DROP ATTRIBUTE does.
SELECT DISTINCT r.reltype
  FROM pg_catalog.pg_event_trigger_dropped_objects() d
  JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) d.objid
 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.objsubid OPERATOR(pg_catalog.>) 0
   AND r.reltype OPERATOR(pg_catalog.<>) 0
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() t
                    WHERE t.classid OPERATOR(pg_catalog.=) d.classid
                      AND t.objid OPERATOR(pg_catalog.=) d.objid
                      AND t.objsubid OPERATOR(pg_catalog.=) 0)
