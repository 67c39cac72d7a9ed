-- Deletes every event of a subscription ($1) still in the queue, pending or parked: unsubscribe
-- with discard_queued.
DELETE FROM webhook._event_queue WHERE subscription_id = $1
