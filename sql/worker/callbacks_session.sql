-- The callback runner's session: a pinned search_path for its own queries (callbacks run in a
-- sandbox of their own, see privilege.rs), and a deadlock timeout a tenth of the server's (see
-- session.sql).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
       -- In a lock cycle with a user's statement (DROP EXTENSION while a pass holds one of
       -- pg_webhook's tables and waits for another), this session finds the deadlock first and
       -- is the one cancelled, like autovacuum; its work is tried again later.
       pg_catalog.set_config('deadlock_timeout',
           GREATEST(1, (pg_catalog.date_part('epoch',
               pg_catalog.current_setting('deadlock_timeout')::pg_catalog.interval) * 100)::int)::text,
           false),
       pg_catalog.set_config('application_name', 'pg_webhook callbacks', false)
