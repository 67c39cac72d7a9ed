-- Recording the outcome of event $1's callback gave up (it waited past the runner's lock
-- timeout for a row an owner's open transaction holds, see callbacks_session.sql) and was
-- rolled back with the call: the call ended, the runner did not die during it, so its start
-- is not counted (callback_started.sql) and the callback is tried again like any other.
UPDATE webhook._callback_queue SET starts = starts - 1 WHERE event_id = $1 AND starts > 0
