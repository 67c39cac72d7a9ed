-- What a new owner of subscription $1 must be able to do, as subscribe() checks it of a
-- subscriber: its table, event kinds, filter, columns, payload, order key and callback; and
-- its owner now, whether that role still exists (an orphan restored where its owner's OID names
-- another role does not: owner_dropped), and who owns its callback function; and whether its
-- callback is still to be bound again here (see _subscriptions.callback_oid), and its
-- signature; and whether a backfill of it runs with a filter (SQL someone chose before).
SELECT s.target::pg_catalog.oid, s.events, s.filter, s.columns, s.exclude_columns,
       s.skip_unchanged, s.payload, s.order_key, s.callback_oid,
       s.owner::pg_catalog.oid,
       NOT s.owner_dropped
           AND EXISTS (SELECT FROM pg_catalog.pg_authid a WHERE a.oid OPERATOR(pg_catalog.=) s.owner),
       (SELECT p.proowner FROM pg_catalog.pg_proc p
         WHERE p.oid OPERATOR(pg_catalog.=) s.callback_oid),
       s.callback IS NOT NULL
           AND s.callback_bound_in IS DISTINCT FROM webhook._binding_key(),
       s.callback,
       EXISTS (SELECT FROM webhook._backfills b
                WHERE b.subscription_id OPERATOR(pg_catalog.=) s.id
                  AND b.state OPERATOR(pg_catalog.=) 'running' AND b.filter IS NOT NULL)
  FROM webhook._subscriptions s
 WHERE s.id OPERATOR(pg_catalog.=) $1
