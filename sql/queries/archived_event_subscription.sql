-- The subscription a finished (archived) event ($1) belongs to: its owner, id and status, and
-- whether it is an orphan; no row if no such event is in the archive. By id, not name: an
-- unsubscribed one is found (and refused as such), and a new one of the same name is not. An
-- orphan's owner is 0 (see managed_subscription.sql: its OID may name another role after a
-- restore elsewhere), read through the row as JSON since a schema before 0.3.0 has no
-- owner_dropped.
SELECT CASE WHEN o.dropped THEN 0::pg_catalog.oid ELSE s.owner::pg_catalog.oid END,
       s.id, s.status, o.dropped
  FROM webhook._event_archive a
  JOIN webhook._subscriptions s ON s.id = a.subscription_id
 CROSS JOIN LATERAL (SELECT COALESCE((pg_catalog.to_jsonb(s)
                                      OPERATOR(pg_catalog.->>) 'owner_dropped')::boolean,
                                     false) AS dropped) o
 WHERE a.id = $1
