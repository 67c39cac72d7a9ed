-- Whether the owners of these subscriptions ($1) may still read their tables, read after the
-- claimed events so that a REVOKE committed before them is seen.
SELECT o.id, o.denied FROM webhook._owner_access o WHERE o.id = ANY ($1::pg_catalog.int4[])
