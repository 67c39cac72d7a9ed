-- Marks back these subscriptions ($1) not drained: the claim read an event of theirs, which
-- the worker must load them to send (see drained.sql). Waits for a row another transaction
-- holds: skipped, the event would go out as that of a subscription that no longer exists.
UPDATE webhook._subscriptions
   SET drained = false
 WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[]) AND drained
