-- The subscriptions whose owners may not read their tables now (webhook._owner_access), read
-- just before a DROP by the webhook_on_drop_start event trigger.
SELECT o.id FROM webhook._owner_access o WHERE o.denied IS NOT NULL
