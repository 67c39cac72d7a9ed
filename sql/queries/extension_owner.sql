-- The role that owns the pg_webhook extension (no row if it is not installed here).
SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_webhook'
