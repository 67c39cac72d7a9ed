-- The backfills to work on, marked as in a round of worker process $1 (its pid) until
-- end_round.sql. One still marked by another process was in a round when that worker ended
-- (the watchdog ends a worker whose chunk goes on after its cancel; or a crash, a restart):
-- counted in interruptions.
UPDATE webhook._backfills
   SET interruptions = interruptions
           + (chunk_pid IS NOT NULL AND chunk_pid <> $1)::integer,
       chunk_pid = $1
 WHERE state = 'running'
RETURNING id, interruptions
