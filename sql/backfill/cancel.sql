-- Cancels subscription $1's running backfill on behalf of role $2. Waits for a chunk in
-- progress to commit (it holds the row), so no chunk queues events after this commits.
UPDATE webhook._backfills
   SET state = 'canceled', finished_at = pg_catalog.now(),
       last_error = 'canceled by ' OPERATOR(pg_catalog.||) $2::pg_catalog.oid::pg_catalog.regrole::pg_catalog.text
 WHERE subscription_id = $1 AND state = 'running'
RETURNING id
