-- An inheritance child of table $1 that is not a partition; NULL if it has none.
SELECT (SELECT i.inhrelid::pg_catalog.regclass::pg_catalog.text
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
         WHERE i.inhparent OPERATOR(pg_catalog.=) $1 AND NOT c.relispartition
         LIMIT 1)
