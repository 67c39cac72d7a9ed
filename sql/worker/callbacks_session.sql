-- The callback runner's session: a pinned search_path for its own queries (callbacks run in a
-- sandbox of their own, see privilege.rs).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
       pg_catalog.set_config('application_name', 'pg_webhook callbacks', false)
