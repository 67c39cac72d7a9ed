-- A transaction ($1 txid) of a subscription ($2) is to be cut again from one of its parts on,
-- over several claims (see src/worker/cutting.rs): its last queued event, which tells the
-- transaction's size (transaction_size.sql), is marked as being cut by the size made negative,
-- so that the transaction does not look cut half-way — to this worker's next claims, or to a
-- worker that takes over from one stopped in the middle, which cuts it again from its lowest
-- part — and the size survives to be told again when the cut is done. Returns the size (NULL:
-- no event left) and whether another transaction holds that event's row (an unsubscribe
-- discarding the queue, a superuser's lock, left open: not waited for, the worker tries again
-- at a later claim; waiting, every claim waited until lock_timeout, failed and began again).
WITH last AS MATERIALIZED (
    SELECT l.ctid AS tid
      FROM webhook._event_queue l
     WHERE l.txid = $1::pg_catalog.text::pg_catalog.xid8 AND l.subscription_id = $2
     ORDER BY l.id DESC
     LIMIT 1
), locked AS MATERIALIZED (
    SELECT x.ctid AS tid
      FROM webhook._event_queue x
     WHERE x.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT t.tid FROM last t))
       FOR NO KEY UPDATE OF x SKIP LOCKED
), marked AS (
    UPDATE webhook._event_queue q
       SET tx_events = -pg_catalog.abs(q.tx_events)
     WHERE q.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT t.tid FROM locked t))
    RETURNING pg_catalog.abs(q.tx_events) AS size
)
SELECT (SELECT m.size FROM marked m),
       EXISTS (SELECT FROM last) AND NOT EXISTS (SELECT FROM marked)
