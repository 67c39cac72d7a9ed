-- The subscriptions, whatever their status, on the table ($1) a DROP is about to delete, and
-- whether each one's owner may not read it now (webhook._owner_access): the last word on their
-- held events, read while the DROP holds the table's lock and its ACL is still there.
SELECT pg_catalog.array_agg(s.id ORDER BY s.id),
       pg_catalog.array_agg(o.denied IS NOT NULL ORDER BY s.id)
  FROM webhook._subscriptions s
  JOIN webhook._owner_access o ON o.id = s.id
 WHERE s.target::pg_catalog.oid = $1
