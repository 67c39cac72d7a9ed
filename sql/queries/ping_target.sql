-- What a ping of subscription $1 says: its table's schema and name, and the current time as
-- JSON renders it (no row if there is no such subscription). The database's name is read in
-- Rust, as bytes (crate::sql::database_name): it need not be UTF-8.
SELECT n.nspname::text, c.relname::text, pg_catalog.to_json(pg_catalog.now()) #>> '{}'
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_class c ON c.oid = s.target
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE s.id = $1
