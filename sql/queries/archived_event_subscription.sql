-- The subscription a finished (archived) event ($1) belongs to: its name and owner; no row if
-- no such event is in the archive.
SELECT s.name, s.owner::pg_catalog.oid
  FROM webhook._event_archive a
  JOIN webhook._subscriptions s ON s.id = a.subscription_id
 WHERE a.id = $1
