-- The order key columns ($2) of table $1 as they are: for each name, whether the table has such
-- a column, and whether the caller ($3) may read it.
SELECT k.name,
       a.attnum IS NOT NULL,
       a.attnum IS NOT NULL
           AND pg_catalog.has_column_privilege($3::pg_catalog.oid, $1::pg_catalog.oid, a.attnum, 'SELECT')
  FROM unnest($2::pg_catalog.text[]) WITH ORDINALITY AS k(name, n)
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = $1::pg_catalog.oid AND a.attname = k.name
        AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY k.n
