-- A subscription's settings added in 0.3.0 ($1 id): events per request ($2), how long a partial
-- batch waits to fill ($3, in milliseconds), its order key columns ($4), grouping ($5) and
-- payload expression ($6). Apart from the insert, like set_delivery.sql, so older entry points
-- keep working on older schemas.
UPDATE webhook._subscriptions
   SET batch_size = $2, batch_wait = $3::pg_catalog.int8 * interval '1 millisecond',
       order_key = $4, group_by = $5, payload = $6
 WHERE id = $1
