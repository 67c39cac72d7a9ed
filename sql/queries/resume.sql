-- Resumes a paused or disabled subscription ($1); nothing if it is neither any more
-- (unsubscribed meanwhile, say: it must not come back to life without triggers).
UPDATE webhook._subscriptions
   SET status = 'active', status_reason = NULL, failing_since = NULL, read_denied = false
 WHERE id = $1 AND status IN ('paused', 'disabled')
RETURNING id
