-- The primary key columns of table $1 in key order (no rows: it has none), with each one's
-- type and the operators of its key index's btree operator class as the index orders by them,
-- schema-qualified (OPERATOR(schema.op)), by strategy: <, <=, =, >=, >. A partitioned table's
-- key is its partitioned index's.
SELECT a.attname::pg_catalog.text, a.atttypid,
       ARRAY(SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname)
               FROM pg_catalog.pg_amop ao
               JOIN pg_catalog.pg_operator o ON o.oid OPERATOR(pg_catalog.=) ao.amopopr
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
              WHERE ao.amopfamily OPERATOR(pg_catalog.=) c.opcfamily
                AND ao.amoplefttype OPERATOR(pg_catalog.=) c.opcintype
                AND ao.amoprighttype OPERATOR(pg_catalog.=) c.opcintype
                AND ao.amopmethod OPERATOR(pg_catalog.=) c.opcmethod
              ORDER BY ao.amopstrategy)
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, n)
  JOIN pg_catalog.pg_attribute a
    ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) k.attnum
  JOIN pg_catalog.pg_opclass c
    ON c.oid OPERATOR(pg_catalog.=) i.indclass[k.n::pg_catalog.int4 OPERATOR(pg_catalog.-) 1]
 WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary
 ORDER BY k.n
