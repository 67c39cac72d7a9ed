-- Pauses an active subscription ($1), saying who did ($2) and when; nothing if it is no longer
-- active (unsubscribed meanwhile, say).
UPDATE webhook._subscriptions
   SET status = 'paused',
       status_reason = pg_catalog.format('paused by %s at %s',
                                         $2::pg_catalog.oid::pg_catalog.regrole, pg_catalog.now())
 WHERE id = $1 AND status = 'active'
RETURNING id
