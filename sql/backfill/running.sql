-- The running backfill of subscription $1, if any: when it started and how many rows it sent.
SELECT pg_catalog.to_char(started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), rows_sent
  FROM webhook._backfills
 WHERE subscription_id = $1 AND state = 'running'
