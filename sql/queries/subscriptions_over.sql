-- Live subscriptions whose table is one of $1 or lies above one of them (inheritance links of
-- any kind, so that a table that stopped being a partition is seen too): a change to those
-- tables may change where the subscriptions' triggers belong.
WITH RECURSIVE up(relid) AS (
    SELECT pg_catalog.unnest($1::pg_catalog.oid[])
    UNION
    SELECT i.inhparent
      FROM pg_catalog.pg_inherits i
      JOIN up ON i.inhrelid OPERATOR(pg_catalog.=) up.relid
)
SELECT s.id
  FROM webhook._subscriptions s
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
   AND s.target::pg_catalog.oid IN (SELECT up.relid FROM up)
