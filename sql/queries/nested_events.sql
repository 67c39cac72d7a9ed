-- The events of subscription $2 this transaction ($1) queued with ids from $3 to $4, in id
-- order: statements nested in another's AFTER triggers took ids in that span before the outer
-- statement took its own, and capture moves theirs after it (src/capture/nested.rs), picking
-- them out of the span by the ranges it noted. One range scan of the queue's key: a join with
-- the noted ranges was planned as a nested loop over them for each of this transaction's
-- events (the planner expects one), quadratic in the nested statements.
SELECT q.id
  FROM webhook._event_queue AS q
 WHERE q.txid OPERATOR(pg_catalog.=) $1
   AND q.id OPERATOR(pg_catalog.>=) $3
   AND q.id OPERATOR(pg_catalog.<=) $4
   AND q.subscription_id OPERATOR(pg_catalog.=) $2
 ORDER BY q.id
