-- Worker process $1 (its pid) is about to run chunks of running backfill $2: marked until
-- end_round.sql (in webhook._backfill_rounds). A mark another process left was its worker
-- ending while it ran this backfill's chunks (the watchdog ends a worker whose chunk goes on
-- after its cancel; or a crash, a restart): counted in interruptions, which the backfill keeps
-- for life. Returns them; no row when it is not running or its row is locked (a
-- cancel_backfill() in an open transaction): it is left for this round.
WITH running AS (
    SELECT id FROM webhook._backfills
     WHERE id = $2 AND state = 'running'
       FOR NO KEY UPDATE SKIP LOCKED
), left_by AS (
    SELECT pid FROM webhook._backfill_rounds WHERE backfill_id = $2
), marked AS (
    INSERT INTO webhook._backfill_rounds (backfill_id, pid)
    SELECT id, $1 FROM running
        ON CONFLICT (backfill_id) DO UPDATE SET pid = excluded.pid
)
UPDATE webhook._backfills b
   SET interruptions = b.interruptions
           + (SELECT count(*) FROM left_by WHERE pid <> $1)::integer
  FROM running
 WHERE b.id = running.id
RETURNING b.interruptions
