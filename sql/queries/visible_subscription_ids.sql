-- The subscriptions the current user may see (webhook.subscriptions applies
-- webhook._visible_subscriptions, which the user may not read itself).
SELECT s.id FROM webhook.subscriptions s
