-- A chunk of running backfill $1 failed with $2 and will be tried again.
UPDATE webhook._backfills SET last_error = $2 WHERE id = $1 AND state = 'running'
