-- The live subscription named $1: its id, owner and status (no row if there is none), and
-- whether it is an orphan (its owner's role was dropped: owner_dropped), which only a
-- superuser manages, whatever role its owner's OID may name now (after a restore elsewhere).
-- Read through the row as JSON: a schema before 0.3.0 has no owner_dropped.
SELECT s.id, CASE WHEN NOT o.dropped THEN s.owner::pg_catalog.oid ELSE 0::pg_catalog.oid END,
       s.status, o.dropped
  FROM webhook._subscriptions s
 CROSS JOIN LATERAL (SELECT COALESCE((pg_catalog.to_jsonb(s)
                                      OPERATOR(pg_catalog.->>) 'owner_dropped')::boolean,
                                     false) AS dropped) o
 WHERE s.name OPERATOR(pg_catalog.=) $1 AND s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
