-- Notes that subscription $1's triggers are complete in this database (made by pg_webhook, or
-- restored and seen): from now on a missing one was dropped.
INSERT INTO webhook._triggers_made (subscription_id) VALUES ($1)
    ON CONFLICT (subscription_id) DO NOTHING
