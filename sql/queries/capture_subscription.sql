-- The subscription a capture trigger fired for ($1), read as a JSON row so that every schema
-- version since 0.1.0 reads the same way, and whether the table the trigger fired on ($2) is
-- that subscription's table or one of its partitions, at any depth. Runs as the extension owner
-- with search_path pinned; every operator is qualified anyway.
WITH RECURSIVE up(relid) AS (
    SELECT $2::pg_catalog.oid
    UNION
    SELECT i.inhparent
      FROM pg_catalog.pg_inherits i
      JOIN up ON i.inhrelid OPERATOR(pg_catalog.=) up.relid
      JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhrelid
     WHERE p.relispartition
)
SELECT pg_catalog.to_jsonb(s)::pg_catalog.text,
       s.owner::pg_catalog.oid,
       s.target::pg_catalog.oid,
       n.nspname::pg_catalog.text,
       c.relname::pg_catalog.text,
       EXISTS (SELECT 1 FROM up WHERE up.relid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid)
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE s.id OPERATOR(pg_catalog.=) $1
