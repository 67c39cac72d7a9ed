-- The callback runner's session: a pinned search_path for its own queries (callbacks run in a
-- sandbox of their own, see privilege.rs), a lock timeout, and a deadlock timeout a tenth of
-- the server's (see session.sql).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
       -- The runner runs one owner's work at a time, so its own statements (recording a
       -- callback's outcome, ending a backfill's round) must not wait for ever for a row lock
       -- an owner's open transaction holds (a replay of the event, a cancel_backfill()): every
       -- owner's callbacks and chunks would wait with it. What failed so is tried again.
       -- Callbacks themselves run with the server's lock_timeout (callbacks/call.rs).
       pg_catalog.set_config('lock_timeout', '1s', false),
       -- In a lock cycle with a user's statement (DROP EXTENSION while a pass holds one of
       -- pg_webhook's tables and waits for another), this session finds the deadlock first and
       -- is the one cancelled, like autovacuum; its work is tried again later.
       pg_catalog.set_config('deadlock_timeout',
           GREATEST(1, (pg_catalog.date_part('epoch',
               pg_catalog.current_setting('deadlock_timeout')::pg_catalog.interval) * 100)::int)::text,
           false),
       pg_catalog.set_config('application_name', 'pg_webhook callbacks', false)
