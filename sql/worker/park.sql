-- Holds events (keyed by txid $1 and id $2) of paused or disabled subscriptions ($3), and of
-- those whose owner may no longer read their table ($4, whatever their status): out of the
-- claim indexes until they send again. The subscription's status is checked here, under a share
-- lock, and not only in the worker's copy: a resume updates that row, so the two serialize.
-- Either the resume waits and then un-parks what was parked, or the park finds the row held
-- and puts the events off (below), or it comes after, sees the subscription active and parks
-- nothing. Events whose subscription turned out to be sending
-- again are made due now (the worker, going by its older copy, did not start them, and its
-- cursor has moved past them). The worker also un-parks every parked event of a subscription
-- it sees start sending again (make_due.sql), which covers a resume whose snapshot is older than
-- a park (REPEATABLE READ).
-- A subscription's row another transaction holds (a resume left open, say) is not waited for:
-- its events are put off for a second, to be parked or sent once that transaction has ended
-- (waiting, every claim waited until lock_timeout, failed and began again, and no
-- subscription's events went out for as long as it stayed open). Nor is an event's row another
-- transaction holds (an unsubscribe discarding the queue, left open): it stays as it was, and
-- the claim reads it again later (see defer.sql). Returns the ids of the events it wrote.
WITH seen AS MATERIALIZED (
    SELECT s.id, (s.status IN ('paused', 'disabled') OR s.id = ANY ($4::pg_catalog.int4[])) AS held
      FROM webhook._subscriptions s
     WHERE s.id = ANY ($3::pg_catalog.int4[])
       FOR SHARE SKIP LOCKED
)
UPDATE webhook._event_queue q
   SET next_attempt_at = CASE WHEN q.subscription_id IN (SELECT id FROM seen WHERE held)
                              THEN 'infinity'::pg_catalog.timestamptz
                              WHEN q.subscription_id IN (SELECT id FROM seen)
                              THEN pg_catalog.now()
                              ELSE pg_catalog.now() + interval '1 second' END
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[]) AS u(txid, id)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
   AND q.ctid = ANY (ARRAY(SELECT l.ctid
                             FROM webhook._event_queue l
                             JOIN unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[]) AS v(txid, id)
                               ON l.txid = v.txid::pg_catalog.text::pg_catalog.xid8
                              AND l.id = v.id
                              FOR NO KEY UPDATE OF l SKIP LOCKED))
RETURNING q.id
