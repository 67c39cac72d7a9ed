-- Makes due now the events of these subscriptions ($1) waiting for a later time: the
-- subscription's own rate or concurrency limit changed, and an event put back for it waits for
-- a slot given under the old one (see src/core/limits.rs), at an old rate up to its whole
-- backlog's time. Retries waiting for their schedule cannot be told from those and come due
-- too (each is tried once early), as does a partial batch held to fill (it goes with what has
-- gathered). Parked events (infinity) stay parked. Limits change only by hand (subscribe sets
-- them once), so this is rare.
UPDATE webhook._event_queue
   SET next_attempt_at = pg_catalog.now()
 WHERE subscription_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now()
   AND next_attempt_at OPERATOR(pg_catalog.<) 'infinity'::pg_catalog.timestamptz
