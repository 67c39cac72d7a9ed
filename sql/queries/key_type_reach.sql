-- Shared by order_key_types.sql and order_key_composites.sql, which define `keys(sub, target,
-- order_key)` before it: the types the values of each key column reach, through domains,
-- arrays, ranges, multiranges and composite or row type attributes at any depth (a composite
-- value's hash is made from its attributes). A row per (subscription, key column, type).
reach(sub, col, typ) AS (
    SELECT k.sub, a.attname::pg_catalog.text, a.atttypid
      FROM keys k
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid OPERATOR(pg_catalog.=) k.target
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (k.order_key)
    UNION
    SELECT r.sub, r.col, n.typ
      FROM reach r
      JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) r.typ
     CROSS JOIN LATERAL (
           SELECT t.typbasetype WHERE t.typbasetype OPERATOR(pg_catalog.<>) 0
           UNION ALL
           SELECT t.typelem WHERE t.typelem OPERATOR(pg_catalog.<>) 0
           UNION ALL
           SELECT g.rngsubtype FROM pg_catalog.pg_range g
            WHERE g.rngtypid OPERATOR(pg_catalog.=) t.oid
               OR g.rngmultitypid OPERATOR(pg_catalog.=) t.oid
           UNION ALL
           SELECT f.atttypid FROM pg_catalog.pg_attribute f
            WHERE t.typrelid OPERATOR(pg_catalog.<>) 0
              AND f.attrelid OPERATOR(pg_catalog.=) t.typrelid
              AND f.attnum OPERATOR(pg_catalog.>) 0 AND NOT f.attisdropped) n(typ)
)
