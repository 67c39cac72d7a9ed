-- Deletes every event of a subscription ($1) still in the queue, pending or parked, and the
-- attempts logged for them: unsubscribe with discard_queued.
WITH discarded AS (
    DELETE FROM webhook._event_queue WHERE subscription_id = $1 RETURNING id
)
DELETE FROM webhook._attempts t USING discarded d WHERE t.event_id = d.id
