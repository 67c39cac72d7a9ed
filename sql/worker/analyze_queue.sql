-- Counts the queue again for the planner (see queue_stats_stale.sql). ANALYZE samples at most
-- 30,000 rows and blocks no writer.
ANALYZE webhook._event_queue
