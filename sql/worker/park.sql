-- Holds events (keyed by txid $1 and id $2) of paused or disabled subscriptions ($3), and of
-- those whose owner may no longer read their table ($4, whatever their status): out of the
-- claim indexes until they send again. The subscription's status is checked here, under a share
-- lock, and not only in the worker's copy: a resume updates that row, so the two serialize.
-- Either the resume waits and then un-parks what was parked, or the park waits, sees the
-- subscription active and parks nothing. Events whose subscription turned out to be sending
-- again are made due now (the worker, going by its older copy, did not start them, and its
-- cursor has moved past them). The worker also un-parks every parked event of a subscription
-- it sees start sending again (unpark.sql), which covers a resume whose snapshot is older than
-- a park (REPEATABLE READ).
WITH held AS (
    SELECT s.id FROM webhook._subscriptions s
     WHERE s.id = ANY ($3::pg_catalog.int4[])
       AND (s.status IN ('paused', 'disabled') OR s.id = ANY ($4::pg_catalog.int4[]))
       FOR SHARE
)
UPDATE webhook._event_queue q
   SET next_attempt_at = CASE WHEN q.subscription_id IN (SELECT id FROM held)
                              THEN 'infinity'::pg_catalog.timestamptz
                              ELSE pg_catalog.now() END
  FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[]) AS u(txid, id)
 WHERE q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
