-- A backfill chunk's own settings, for its transaction only. It commits synchronously (the
-- worker's session does not): its events and its progress must survive a crash together, or a
-- receiver could get events of a chunk that the crash undid and that is then queued again under
-- other webhook-ids. And it waits at most 100 ms for a lock (an ordered table's writer, a key's
-- writer, DDL on the table): the worker delivers nothing while it waits, so the chunk gives up
-- and is tried again a second later instead.
SELECT pg_catalog.set_config('synchronous_commit', 'on', true),
       pg_catalog.set_config('lock_timeout', '100ms', true)
