-- Takes the lock ANALYZE takes on the queue, under lock_timeout_short.sql's one second, before
-- the statistics are checked again and the queue analyzed. Another worker that met the same
-- backlog may be analyzing it: skipping it then (SKIP_LOCKED, as before) left this worker
-- recording its first outcomes with a plan made on "0 rows", which read the whole queue once per
-- outcome (10 s for 256 outcomes with 100,000 queued). A second, not lock_timeout: a VACUUM or
-- pg_repack holds this lock for its whole run, and delivery goes on meanwhile (the check comes
-- again a second later).
LOCK TABLE webhook._event_queue IN SHARE UPDATE EXCLUSIVE MODE
