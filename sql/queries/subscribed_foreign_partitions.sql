-- Foreign tables under live subscriptions' tables, at any depth, with the xmin of the link that
-- put each there: one the current transaction made is refused (see foreign_partition.sql).
WITH RECURSIVE down(name, target, relid) AS (
    SELECT s.name, s.target::pg_catalog.oid, s.target::pg_catalog.oid
      FROM webhook._subscriptions s
     WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
    UNION
    SELECT down.name, down.target, i.inhrelid
      FROM pg_catalog.pg_inherits i
      JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.relid
)
SELECT d.name, d.target::pg_catalog.regclass::pg_catalog.text,
       i.inhrelid::pg_catalog.regclass::pg_catalog.text,
       i.inhparent::pg_catalog.regclass::pg_catalog.text,
       i.xmin::pg_catalog.text
  FROM down d
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
  JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) d.relid
 WHERE c.relkind OPERATOR(pg_catalog.=) 'f'
