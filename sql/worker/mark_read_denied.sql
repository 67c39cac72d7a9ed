-- Notes that a subscription's ($1) owner may no longer read its table, whatever its status
-- (paused, disabled for failing, unsubscribed): its held events must not go out once the table
-- is gone (see _subscriptions.read_denied). webhook.resume() clears it.
UPDATE webhook._subscriptions SET read_denied = true
 WHERE id = $1 AND NOT read_denied
