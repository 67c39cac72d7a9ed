-- Worker process $1 is done with the chunks of backfill $2 for this round. Its mark is a row of
-- its own (mark_running.sql): no owner's open transaction holds it.
DELETE FROM webhook._backfill_rounds
 WHERE backfill_id = $2 AND pid = $1
