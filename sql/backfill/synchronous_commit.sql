-- A backfill chunk commits synchronously (the worker's session does not): its events and its
-- progress must survive a crash together, or a receiver could get events of a chunk that the
-- crash undid and that is then queued again under other webhook-ids.
SELECT pg_catalog.set_config('synchronous_commit', 'on', true)
