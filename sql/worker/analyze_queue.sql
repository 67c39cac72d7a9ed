-- Counts the queue again for the planner (see queue_stats_stale.sql). ANALYZE samples at most
-- 30,000 rows and blocks no writer; SKIP_LOCKED: while a VACUUM, another ANALYZE, pg_repack or a
-- DBA holds the table, it is skipped (the next check comes a second later) instead of holding
-- up delivery for lock_timeout.
ANALYZE (SKIP_LOCKED) webhook._event_queue
