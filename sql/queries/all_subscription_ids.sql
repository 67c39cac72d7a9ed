-- Every subscription, live or not, oldest first.
SELECT id FROM webhook._subscriptions ORDER BY id
