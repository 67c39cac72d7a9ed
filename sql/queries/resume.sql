-- Resumes a paused or disabled subscription ($1); nothing if it is neither any more
-- (unsubscribed meanwhile, say: it must not come back to life without triggers).
UPDATE webhook._subscriptions
   SET status = 'active', status_reason = NULL, failing_since = NULL,
       -- Kept while its owner still may not read the table (the worker disables it again).
       read_denied = read_denied AND EXISTS (SELECT 1 FROM webhook._owner_access o
                                              WHERE o.id = $1 AND o.denied IS NOT NULL)
 WHERE id = $1 AND status IN ('paused', 'disabled')
RETURNING id
