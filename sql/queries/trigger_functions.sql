-- The OIDs of pg_webhook's trigger functions webhook._capture() and webhook._order_lock();
-- NULL for one that does not exist (SQL objects older than 0.3.0 have no _order_lock).
SELECT pg_catalog.to_regprocedure('webhook._capture()')::pg_catalog.oid,
       pg_catalog.to_regprocedure('webhook._order_lock()')::pg_catalog.oid
