-- Counts the queue again for the planner (see queue_stats_stale.sql). Run with the lock it takes
-- already held (lock_queue_stats.sql), so it never waits here; it blocks no writer.
--
-- What the planner lacks is the row count, not the columns' statistics, so it samples 300 rows
-- (statistics target 1) instead of the default 30,000: with 100,000 queued events the default
-- took 110-290 ms, the worker claimed nothing meanwhile and the others waited on the lock
-- (a quarter of a drain in batches); 300 rows take 3 ms and count the queue as well (within a
-- few percent: it samples 300 pages and scales their live rows by the pages the queue has).
-- The columns' statistics it leaves are coarse until autovacuum analyzes the queue with the
-- user's target, which the churn of a drain brings on soon; the worker's statements key on
-- the queue's indexes and do not depend on them. SET LOCAL: the setting ends with this
-- transaction.
SET LOCAL default_statistics_target = 1;
ANALYZE webhook._event_queue
