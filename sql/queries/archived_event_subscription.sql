-- The name of the subscription a finished (archived) event ($1) belongs to; NULL if no such
-- event is in the archive.
SELECT (SELECT s.name FROM webhook._event_archive a
          JOIN webhook._subscriptions s ON s.id = a.subscription_id
         WHERE a.id = $1)
