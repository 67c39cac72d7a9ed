-- Waits for locks at most a second for the rest of this transaction, where a busy table may
-- delay a check but never the worker: the worker's trigger check, the queue statistics check.
SET LOCAL lock_timeout = '1s'
