-- Cuts (some of) a transaction ($1 txid) of a subscription ($2) into parts: its queued events
-- with ids from $3[i] to $4[i] go in part $5[i] (a part is a run of the transaction's events in
-- id order), and those of its last part learn how many events the transaction has ($6; NULL
-- for the others, which keep what they have: the count is read off the transaction's last
-- event, see transaction_size.sql). Cut again (its next part over a payload limit lowered
-- since), the count is the first cut's: the events finished before are part of the
-- transaction too.
--
-- Runs of ids, not each event's id: a join of each event's id to its part, while the queue's
-- statistics did not know the transaction's rows yet, was planned as a nested loop that read
-- all the ids again for each row (2 s for a part of 4,000 events, as many seconds per part of
-- a transaction of 200,000 events); before, a plan that hashed the transaction's queued events
-- read all of them for every statement. A handful of runs, each an index range, bounded
-- besides by the first and last: whichever way the join goes, it reads only these events.
--
-- Writes all of them or none: should another transaction hold any of their rows (an
-- unsubscribe discarding the queue, a superuser's lock, left open), it writes nothing and
-- returns false, and the worker goes on with the cut at a later claim (waiting, every claim
-- waited until lock_timeout, failed and began again, for as long as that one stayed open).
WITH runs AS MATERIALIZED (
    SELECT r.first, r.last, r.part
      FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.int8[]),
                      pg_catalog.unnest($5::pg_catalog.int4[])) AS r(first, last, part)
), wanted AS MATERIALIZED (
    SELECT q.ctid AS tid
      FROM webhook._event_queue q
      JOIN runs r ON q.id OPERATOR(pg_catalog.>=) r.first AND q.id OPERATOR(pg_catalog.<=) r.last
     WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2
       AND q.id OPERATOR(pg_catalog.>=) $3[1]
       AND q.id OPERATOR(pg_catalog.<=) $4[pg_catalog.array_upper($4, 1)]
), locked AS MATERIALIZED (
    SELECT l.ctid AS tid
      FROM webhook._event_queue l
     WHERE l.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT w.tid FROM wanted w))
       FOR NO KEY UPDATE OF l SKIP LOCKED
), whole AS MATERIALIZED (
    -- (Matched by tid: a row changed since this statement's snapshot is locked as it is now,
    -- under another tid, which the UPDATE, under the snapshot, would not write.)
    SELECT (SELECT pg_catalog.count(*) FROM locked l JOIN wanted w ON w.tid OPERATOR(pg_catalog.=) l.tid)
           OPERATOR(pg_catalog.=) (SELECT pg_catalog.count(*) FROM wanted) AS whole
), written AS (
    UPDATE webhook._event_queue q
       SET part = r.part, tx_events = COALESCE($6, q.tx_events)
      FROM runs r
     WHERE q.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT l.tid FROM locked l))
       AND q.id OPERATOR(pg_catalog.>=) r.first AND q.id OPERATOR(pg_catalog.<=) r.last
       AND (SELECT whole FROM whole)
    RETURNING 1
)
SELECT (SELECT whole FROM whole)
   AND (SELECT pg_catalog.count(*) FROM written)
       OPERATOR(pg_catalog.=) (SELECT pg_catalog.count(*) FROM wanted)
