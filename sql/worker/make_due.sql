-- Makes due now the events of these subscriptions ($1) that wait: the parked ones ($2 true),
-- or else those waiting for a later time. Run by the worker, never waiting for a row another
-- transaction holds (an unsubscribe discarding the queue, left open: waiting, every claim
-- waited until lock_timeout, failed and began again, for as long as it stayed open). Returns
-- the subscriptions some of whose events were left so.
--
-- Parked ones: the worker found their subscription sending again (resumed, unsubscribed, its
-- owner may read its table again), whatever snapshot the command that made it so ran under
-- (the command gives them back itself too: sql/queries/unpark.sql); those left it gives back
-- at its next load.
-- Waiting ones: the subscription's own rate or concurrency limit changed, and an event put back
-- for it waits for a slot given under the old one (see src/core/limits.rs), at an old rate up
-- to its whole backlog's time. Retries waiting for their schedule cannot be told from those
-- and come due too (each is tried once early), as does a partial batch held to fill (it goes
-- with what has gathered). Limits change only by hand (subscribe sets them once), so this is
-- rare; events left keep the time they were given.
WITH waiting AS MATERIALIZED (
    SELECT q.ctid AS tid, q.subscription_id
      FROM webhook._event_queue q
     WHERE q.subscription_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
       -- (A range of the index from infinity for the parked ones, from now for the others.)
       AND q.next_attempt_at OPERATOR(pg_catalog.>=)
           CASE WHEN $2::pg_catalog.bool THEN 'infinity'::pg_catalog.timestamptz
                ELSE pg_catalog.now() END
       AND (q.next_attempt_at OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz)
           OPERATOR(pg_catalog.=) $2::pg_catalog.bool
), taken AS MATERIALIZED (
    SELECT l.ctid AS tid
      FROM webhook._event_queue l
     WHERE l.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT w.tid FROM waiting w))
       FOR NO KEY UPDATE OF l SKIP LOCKED
), made_due AS (
    UPDATE webhook._event_queue q
       SET next_attempt_at = pg_catalog.now()
     WHERE q.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT t.tid FROM taken t))
 RETURNING q.subscription_id
)
-- (Counted per subscription: which rows were left matters not, and a backlog of a million
-- compared row by row with those made due would take hours. Counted as made due, not as
-- locked: a row changed since this statement's snapshot is locked as it is now, and the UPDATE,
-- under that snapshot, does not see it.)
SELECT w.subscription_id
  FROM (SELECT subscription_id, pg_catalog.count(*) AS n FROM waiting GROUP BY 1) w
  LEFT JOIN (SELECT subscription_id, pg_catalog.count(*) AS n FROM made_due GROUP BY 1) t
    ON t.subscription_id OPERATOR(pg_catalog.=) w.subscription_id
 WHERE t.n IS NULL OR t.n OPERATOR(pg_catalog.<) w.n
