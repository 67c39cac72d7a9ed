-- Replaces a subscription's ($1) signing secret with $2; the old one keeps signing for $3
-- milliseconds (and is forgotten when $3 is 0).
UPDATE webhook._subscriptions
   SET previous_secret = CASE WHEN $3 > 0 THEN secret END,
       previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + $3 * interval '1 millisecond' END,
       secret = $2
 WHERE id = $1
