-- Ends running backfill $1 as $2 ('failed' or 'canceled') with the reason $3.
UPDATE webhook._backfills
   SET state = $2, finished_at = pg_catalog.now(), last_error = $3
 WHERE id = $1 AND state = 'running'
