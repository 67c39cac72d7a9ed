-- The primary key columns of table $1 in key order, with each one's type (no rows: it has
-- none). A partitioned table's key is its partitioned index's.
SELECT a.attname::pg_catalog.text, a.atttypid
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, n)
  JOIN pg_catalog.pg_attribute a
    ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) k.attnum
 WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary
 ORDER BY k.n
