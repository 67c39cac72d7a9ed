-- Of these subscriptions ($1), those whose row no other transaction holds, share-locked until
-- the claim ends. Every command that writes a subscription's queued events (an unsubscribe
-- discarding them, a resume or unsubscribe giving back the parked ones, the DROP of its table)
-- updates its row first: while the claim holds this lock, none can hold any of its events, and
-- the claim may write them without waiting. A subscription left out is one such command's (or
-- a pause's, a change of its settings) left open: its writes wait for a later claim (waiting,
-- every claim waited until lock_timeout, failed and began again, and no subscription's events
-- went out for as long as that transaction stayed open).
SELECT s.id
  FROM webhook._subscriptions s
 WHERE s.id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   FOR SHARE SKIP LOCKED
