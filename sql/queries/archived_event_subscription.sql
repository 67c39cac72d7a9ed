-- The subscription a finished (archived) event ($1) belongs to: its name and owner; no row if
-- no such event is in the archive. An orphan's owner is 0 (see managed_subscription.sql: its
-- OID may name another role after a restore elsewhere), read through the row as JSON since a
-- schema before 0.3.0 has no owner_dropped.
SELECT s.name,
       CASE WHEN COALESCE((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'owner_dropped')::boolean,
                          false)
            THEN 0::pg_catalog.oid ELSE s.owner::pg_catalog.oid END
  FROM webhook._event_archive a
  JOIN webhook._subscriptions s ON s.id = a.subscription_id
 WHERE a.id = $1
