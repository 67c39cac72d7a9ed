-- A runner is about to call the callback of event $1: counted in a transaction of its own, so
-- a runner that dies during the call leaves the count behind for the next one.
UPDATE webhook._callback_queue SET starts = starts + 1 WHERE event_id = $1
