-- What a new owner of subscription $1 must be able to do, as subscribe() checks it of a
-- subscriber: its table, event kinds, filter, columns, payload, order key and callback.
SELECT target::pg_catalog.oid, events, filter, columns, exclude_columns, skip_unchanged, payload,
       order_key, callback::pg_catalog.oid
  FROM webhook._subscriptions
 WHERE id OPERATOR(pg_catalog.=) $1
