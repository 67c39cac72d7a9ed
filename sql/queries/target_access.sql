-- The subscriptions, whatever their status, on the table ($1) a DROP is about to delete, and
-- whether each one's owner may not read it now (webhook._owner_access): the last word on their
-- held events, read while the DROP holds the table's lock and its ACL is still there. (Run
-- inside the DROP of any user: every operator is qualified.)
SELECT pg_catalog.array_agg(s.id ORDER BY s.id),
       pg_catalog.array_agg(o.denied IS NOT NULL ORDER BY s.id)
  FROM webhook._subscriptions s
  JOIN webhook._owner_access o ON o.id OPERATOR(pg_catalog.=) s.id
 WHERE s.target::pg_catalog.oid OPERATOR(pg_catalog.=) $1
