-- Live keyed subscriptions whose order key hashes values of a type the command firing
-- webhook_on_ddl altered ($1: ALTER TYPE ... ADD, DROP, ALTER or RENAME ATTRIBUTE, or a row
-- type): a key column whose type reaches one (key_type_reach.sql, which follows this head), or
-- any of a table typed by one (CREATE TABLE ... OF: its columns are the type's attributes,
-- renamed and dropped with them). The statement's tail is order_key_types_tail.sql.
WITH RECURSIVE keys(sub, target, order_key) AS (
    SELECT s.id, s.target::pg_catalog.oid, s.order_key
      FROM webhook._subscriptions s
     WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed' AND s.order_key IS NOT NULL
),
