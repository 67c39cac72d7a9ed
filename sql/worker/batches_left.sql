-- Run once by a delivery worker as it starts, before it sends anything: the batches that the
-- previous worker of its share ($1, of $2 workers) sent and did not live to record come due
-- again as those batches (see webhook._batches_out). Worker 0 also takes those of a server that
-- ran another number of workers (the others wait for it, see batches_elsewhere.sql): their
-- events would be new to other workers now. Only events still new are put back: one
-- finished, replayed or moved to another batch since keeps where it is. Returns them.
WITH left_over AS (
    DELETE FROM webhook._batches_out b
     WHERE (b.worker = $1 AND b.workers = $2) OR ($1 = 0 AND b.workers <> $2)
 RETURNING b.subscription_id, b.batch, b.txids, b.ids
)
UPDATE webhook._event_queue q
   SET batch = l.batch, next_attempt_at = pg_catalog.now()
  FROM left_over l, unnest(l.txids, l.ids) AS u(txid, id)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
   AND q.subscription_id = l.subscription_id
   AND q.next_attempt_at IS NULL AND q.batch IS NULL AND NOT q.ordered
RETURNING q.id
