-- Worker process $1 ended its round: its backfills are no longer in one, and those in $2 (a
-- chunk of theirs ran to its end) were not interrupted.
UPDATE webhook._backfills
   SET chunk_pid = NULL,
       interruptions = CASE WHEN id = ANY ($2) THEN 0 ELSE interruptions END
 WHERE chunk_pid = $1
