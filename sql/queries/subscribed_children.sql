-- Live subscriptions whose table is one of $1 or lies under one of them and has a parent
-- (is a partition or an inheritance child), with the xmin of that link: a link made by the
-- current transaction means the command just made a subscribed table a child, which would
-- quietly stop capturing what is written through the parent.
WITH RECURSIVE down(relid) AS (
    SELECT pg_catalog.unnest($1::pg_catalog.oid[])
    UNION
    SELECT i.inhrelid
      FROM pg_catalog.pg_inherits i
      JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.relid
)
SELECT s.name, s.target::pg_catalog.regclass::pg_catalog.text,
       i.inhparent::pg_catalog.regclass::pg_catalog.text, i.xmin::pg_catalog.text
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
   AND s.target::pg_catalog.oid IN (SELECT down.relid FROM down)
