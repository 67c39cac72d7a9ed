-- A live subscription with events queued whose order key hashes values of a type the command
-- firing webhook_on_ddl altered ($1: ALTER TYPE ... ADD, DROP, ALTER or RENAME ATTRIBUTE): a
-- key column of that type (or an array or domain over it), or a key column of a table typed
-- by it (CREATE TABLE ... OF). Its name, table and that column. A composite value's hash is
-- made from its attributes, and a typed table's columns are its type's.
SELECT s.name, s.target::pg_catalog.regclass::pg_catalog.text, a.attname::pg_catalog.text
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
  JOIN pg_catalog.pg_attribute a
    ON a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0
   AND NOT a.attisdropped AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (s.order_key)
  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
   AND (c.reloftype OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
        OR a.atttypid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
        OR t.typelem OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
        OR t.typbasetype OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]))
   AND EXISTS (SELECT FROM webhook._event_queue q
                WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id AND q.ordered)
 LIMIT 1
