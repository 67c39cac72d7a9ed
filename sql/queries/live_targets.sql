-- Every live subscription with its table's OID.
SELECT id, target::pg_catalog.oid
  FROM webhook._subscriptions
 WHERE status OPERATOR(pg_catalog.<>) 'unsubscribed'
