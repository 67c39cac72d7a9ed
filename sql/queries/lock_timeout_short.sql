-- Waits for locks at most a second for the rest of this transaction (the worker's trigger
-- check: a busy table delays the check, never the worker).
SET LOCAL lock_timeout = '1s'
