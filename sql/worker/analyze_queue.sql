-- Counts the queue again for the planner (see queue_stats_stale.sql). ANALYZE samples at most
-- 30,000 rows and blocks no writer. Run with the lock it takes already held
-- (lock_queue_stats.sql), so it never waits here.
ANALYZE webhook._event_queue
