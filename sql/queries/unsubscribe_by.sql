-- Marks a subscription ($1) unsubscribed, saying who did ($2) and when.
UPDATE webhook._subscriptions
   SET status = 'unsubscribed',
       status_reason = pg_catalog.format('unsubscribed by %s at %s',
                                         $2::oid::regrole, pg_catalog.now())
 WHERE id = $1
