-- The installed version of pg_webhook in this database, if it is installed and its tables
-- exist (no row otherwise).
SELECT e.extversion::pg_catalog.text FROM pg_catalog.pg_extension e
 WHERE e.extname = 'pg_webhook' AND pg_catalog.to_regclass('webhook._event_queue') IS NOT NULL
