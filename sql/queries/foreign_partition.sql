-- A foreign table among the partitions of table $1, at any depth; NULL if it has none.
-- PostgreSQL collects no transition tuples from foreign partitions: with a capture trigger on
-- the tree, writes through it that reach one fail, and writes naming it go uncaptured.
WITH RECURSIVE down(relid) AS (
    SELECT $1::pg_catalog.oid
    UNION
    SELECT i.inhrelid
      FROM pg_catalog.pg_inherits i
      JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.relid
)
SELECT (SELECT c.oid::pg_catalog.regclass::pg_catalog.text
          FROM down d
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.relid
         WHERE c.relkind OPERATOR(pg_catalog.=) 'f'
         LIMIT 1)
