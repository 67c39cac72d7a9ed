-- Makes the parked events of these subscriptions ($1) due now: they were parked while the
-- subscription was paused or disabled, and it now sends (resumed, or unsubscribed and
-- delivering what was queued).
UPDATE webhook._event_queue
   SET next_attempt_at = pg_catalog.now()
 WHERE subscription_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int4[])
   AND next_attempt_at OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz
