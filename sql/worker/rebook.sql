-- Makes due now the events of these subscriptions ($1) that were put back for their own rate
-- or concurrency limit: the limits changed, and each such event waits for a slot given under
-- the old ones (see src/core/limits.rs), at an old rate up to its whole backlog's time. Events
-- waiting for a retry keep their schedule: only those not attempted in their series (a
-- partial batch held to fill comes due too, and goes with what has gathered). Parked events
-- (infinity) stay parked.
UPDATE webhook._event_queue
   SET next_attempt_at = pg_catalog.now()
 WHERE subscription_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now()
   AND next_attempt_at OPERATOR(pg_catalog.<) 'infinity'::pg_catalog.timestamptz
   AND attempts OPERATOR(pg_catalog.=) series_start
