-- The transaction that was to call event $1's callback and record its outcome gave up on a lock
-- (an owner's open transaction on the archived event, a DBA's VACUUM FULL of a pg_webhook table:
-- the runner's statements wait 1 s, see callbacks_session.sql) and was rolled back, with the
-- call if it was made: the call ended or never started, the runner did not die during it, so
-- its start is not counted (callback_started.sql) and the callback is tried again as before.
UPDATE webhook._callback_queue SET starts = starts - 1 WHERE event_id = $1 AND starts > 0
