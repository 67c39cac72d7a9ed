-- Worker process $1 is done with the chunks of backfill $2 for this round.
UPDATE webhook._backfills SET chunk_pid = NULL
 WHERE id = $2 AND chunk_pid = $1
