-- The next callbacks to run ($1 of them), with what each needs to be called: the subscription's
-- owner and callback function (by OID, never by name), whether that function still exists, and
-- how many times a runner started it before.
SELECT c.event_id, c.subscription_id, s.owner::pg_catalog.oid, s.callback::pg_catalog.oid,
       p.oid IS NOT NULL, c.starts
  FROM webhook._callback_queue c
  LEFT JOIN webhook._subscriptions s ON s.id = c.subscription_id
  LEFT JOIN pg_catalog.pg_proc p ON p.oid = s.callback::pg_catalog.oid
 ORDER BY c.event_id
 LIMIT $1
