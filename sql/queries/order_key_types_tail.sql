-- The tail of order_key_types.sql (after key_type_reach.sql): their id, name, table (as text
-- and OID), a key column concerned, and whether they have events queued.
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
