-- Those of subscriptions $1 (live ones over the tables a DDL command changed: see
-- subscriptions_over.sql) keyed (order_key) by one of the columns $2: their id, name and
-- table, the columns of $2 in their key, and whether they have events queued, whose keys were
-- hashed from those columns as they were before the command.
SELECT s.id, s.name, s.target::pg_catalog.regclass::pg_catalog.text,
       ARRAY(SELECT k FROM pg_catalog.unnest(s.order_key) k
              WHERE k OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])),
       EXISTS (SELECT FROM webhook._event_queue q
                WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id AND q.ordered)
  FROM webhook._subscriptions s
 WHERE s.id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND s.order_key OPERATOR(pg_catalog.&&) $2::pg_catalog.text[]
