-- The tables a subscription's capture triggers belong on: its table ($1) and its partitions at
-- any depth that can carry a statement trigger with transition tables (ordinary and
-- partitioned tables; not foreign partitions). Inheritance children are not followed: they may
-- have columns the parent has not, and a trigger on a parent gives no rights on them.
WITH RECURSIVE down(relid) AS (
    SELECT $1::pg_catalog.oid
    UNION
    SELECT i.inhrelid
      FROM pg_catalog.pg_inherits i
      JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.relid
      JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhrelid
     WHERE p.relispartition
)
SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM down d
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.relkind IN ('r', 'p')
