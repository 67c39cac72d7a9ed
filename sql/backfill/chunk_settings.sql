-- A backfill chunk's own settings, for its transaction only. It commits synchronously (whatever
-- the server's or the database's synchronous_commit): its events and its progress must survive
-- a crash together, or a receiver could get events of a chunk that the crash undid and that is
-- then queued again under other webhook-ids. And it waits at most 100 ms for a lock (an ordered
-- table's writer, a key's writer, DDL on the table): the callback runner runs nothing else
-- while it waits, so the chunk gives up and is tried again later instead (backfills.rs).
SELECT pg_catalog.set_config('synchronous_commit', 'on', true),
       pg_catalog.set_config('lock_timeout', '100ms', true)
