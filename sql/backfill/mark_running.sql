-- Worker process $1 (its pid) is about to run chunks of running backfill $2: marked until
-- end_round.sql. A mark another process left was its worker ending while it ran this
-- backfill's chunks (the watchdog ends a worker whose chunk goes on after its cancel; or a
-- crash, a restart): counted in interruptions, which the backfill keeps for life. Returns
-- them; no row when it is not running or its row is locked (a cancel_backfill() in an open
-- transaction): it is left for this round.
UPDATE webhook._backfills b
   SET interruptions = b.interruptions
           + (b.chunk_pid IS NOT NULL AND b.chunk_pid <> $1)::integer,
       chunk_pid = $1
  FROM (SELECT id FROM webhook._backfills
         WHERE id = $2 AND state = 'running'
           FOR NO KEY UPDATE SKIP LOCKED) l
 WHERE b.id = l.id
RETURNING b.interruptions
