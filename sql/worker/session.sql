-- The delivery worker's session: a pinned search_path so no user object can hijack its
-- queries; asynchronous commit, because a lost outcome only means a resend; a lock timeout, so
-- a DBA's long lock on a pg_webhook table stalls delivery for seconds, not for ever; a deadlock
-- timeout a tenth of the server's; and index-only access paths. (Its application_name, 'pg_webhook worker <n>', is set by the
-- worker itself.)
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
       pg_catalog.set_config('synchronous_commit', 'off', false),
       pg_catalog.set_config('lock_timeout', '5s', false),
       -- In a lock cycle with a user's statement (DROP EXTENSION while a pass holds one of
       -- pg_webhook's tables and waits for another), this session finds the deadlock first and
       -- is the one cancelled, like autovacuum; its work is tried again later.
       pg_catalog.set_config('deadlock_timeout',
           GREATEST(1, (pg_catalog.date_part('epoch',
               pg_catalog.current_setting('deadlock_timeout')::pg_catalog.interval) * 100)::int)::text,
           false),
       -- The statements are prepared once, often while the queue is empty; a plan that scans
       -- the whole queue would be fine then and ruinous with a backlog. The queue is only ever
       -- read through its indexes.
       pg_catalog.set_config('enable_seqscan', 'off', false),
       pg_catalog.set_config('enable_bitmapscan', 'off', false),
       -- Disabled paths inflate plan costs past jit_above_cost, and JIT compiling a tiny
       -- query took 130 ms a time.
       pg_catalog.set_config('jit', 'off', false)
