-- The subscriptions whose triggers were made or seen complete in this database.
SELECT subscription_id FROM webhook._triggers_made
