-- The table $1 is a partition or inheritance child of; NULL if it has no parent.
SELECT (SELECT i.inhparent::pg_catalog.regclass::pg_catalog.text
          FROM pg_catalog.pg_inherits i
         WHERE i.inhrelid OPERATOR(pg_catalog.=) $1 LIMIT 1)
