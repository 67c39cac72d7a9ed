-- Whether event $1 is still in the queue (pending, or parked).
SELECT EXISTS (SELECT 1 FROM webhook._event_queue WHERE id = $1)
