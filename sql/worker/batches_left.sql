-- Run once by a delivery worker as it starts, before it claims anything: the batches that the
-- previous worker of its share ($1, of $2 workers) sent and did not live to record come due
-- again as those batches (see webhook._batches_out). So do those a server running another
-- count of workers left (pg_webhook.workers changed, or a standby promoted whose default
-- differs), whichever worker starts first: their events are spread over every share of the
-- new count, and a worker claiming before they are put back would send some as new batches
-- of its own. (A worker that finds such a row locked by another waits for it to commit: once
-- this statement is done, every such batch is back.) A batch of events never sent before
-- is made of new events, or of events due without a batch (held for batch_wait to fill, put
-- off by a limit, replayed, resumed): both are put back. One finished, replayed (it has another
-- txid) or moved to another batch since keeps where it is; one parked since (its subscription
-- paused) stays parked, in the batch. Returns how many.
WITH left_over AS (
    DELETE FROM webhook._batches_out b
     WHERE (b.worker = $1 AND b.workers = $2) OR b.workers <> $2
 RETURNING b.subscription_id, b.batch, b.txids, b.ids
)
UPDATE webhook._event_queue q
   SET batch = l.batch,
       next_attempt_at = CASE WHEN q.next_attempt_at = 'infinity'::pg_catalog.timestamptz
                              THEN q.next_attempt_at ELSE pg_catalog.now() END
  FROM left_over l, unnest(l.txids, l.ids) AS u(txid, id)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
   AND q.subscription_id = l.subscription_id
   AND q.batch IS NULL AND NOT q.ordered
RETURNING q.id
