-- Foreign tables under live subscriptions' tables, at any depth, with the xmins of the links on
-- the way down to each: one the current transaction made (the foreign table's own, or that of
-- a subtree attached with it inside) is refused (see foreign_partition_of in src/api/target.rs).
WITH RECURSIVE down(name, target, relid, parent, xmins) AS (
    SELECT s.name, s.target::pg_catalog.oid, s.target::pg_catalog.oid, 0::pg_catalog.oid,
           ARRAY[]::pg_catalog.text[]
      FROM webhook._subscriptions s
     WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
    UNION ALL
    SELECT down.name, down.target, i.inhrelid, i.inhparent,
           down.xmins OPERATOR(pg_catalog.||) i.xmin::pg_catalog.text
      FROM pg_catalog.pg_inherits i
      JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.relid
)
SELECT d.name, d.target::pg_catalog.regclass::pg_catalog.text,
       d.relid::pg_catalog.regclass::pg_catalog.text,
       d.parent::pg_catalog.regclass::pg_catalog.text,
       d.xmins
  FROM down d
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
 WHERE c.relkind OPERATOR(pg_catalog.=) 'f'
