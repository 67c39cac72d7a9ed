-- Disables a subscription ($1) with the reason ($2): its endpoint kept failing, answered
-- 410 Gone, or its owner may no longer read its table ($3).
UPDATE webhook._subscriptions SET status = 'disabled', status_reason = $2, read_denied = $3
 WHERE id = $1 AND status = 'active'
