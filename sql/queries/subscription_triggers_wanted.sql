-- What a subscription ($1) needs in triggers: its table (if it still exists), and its row as
-- JSON (event kinds, ordering, status), so that every schema version since 0.1.0 reads the
-- same way.
SELECT CASE WHEN c.oid IS NOT NULL THEN s.target::pg_catalog.oid END,
       pg_catalog.to_jsonb(s)::pg_catalog.text
  FROM webhook._subscriptions s
  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
 WHERE s.id OPERATOR(pg_catalog.=) $1
