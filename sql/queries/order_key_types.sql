-- Live keyed subscriptions whose order key hashes values of a type the command firing
-- webhook_on_ddl altered ($1: ALTER TYPE ... ADD, DROP, ALTER or RENAME ATTRIBUTE): a key
-- column whose type reaches one through domains, arrays, ranges, multiranges and composite
-- or row type attributes at
-- any depth (a composite value's hash is made from its attributes), or any of a table typed
-- by one (CREATE TABLE ... OF: its columns are the type's attributes, renamed and dropped with
-- them). Their id, name, table (as text and OID), a key column concerned, and whether they
-- have events queued.
WITH RECURSIVE reach(sub, col, typ) AS (
    SELECT s.id, a.attname::pg_catalog.text, a.atttypid
      FROM webhook._subscriptions s
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.order_key)
     WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
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
SELECT s.id, s.name, s.target::pg_catalog.regclass::pg_catalog.text, s.target::pg_catalog.oid,
       k.col,
       EXISTS (SELECT FROM webhook._event_queue q
                WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id AND q.ordered)
  FROM webhook._subscriptions s
  JOIN LATERAL (SELECT r.col FROM reach r
                 WHERE r.sub OPERATOR(pg_catalog.=) s.id
                   AND r.typ OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
                UNION ALL
                SELECT s.order_key[1] FROM pg_catalog.pg_class c
                 WHERE c.oid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
                   AND c.reloftype OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
                LIMIT 1) k ON true
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed' AND s.order_key IS NOT NULL
