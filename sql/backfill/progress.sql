-- A chunk of backfill $1 committed with its events: the last key it read ($2), how many rows
-- it queued ($3), and whether the table is done ($4). Its failures and waits in a row end.
UPDATE webhook._backfills
   SET last_key = COALESCE($2, last_key), rows_sent = rows_sent + $3, last_error = NULL,
       failures = 0, waits = 0, retry_at = NULL,
       state = CASE WHEN $4 THEN 'done' ELSE state END,
       finished_at = CASE WHEN $4 THEN pg_catalog.now() END
 WHERE id = $1
