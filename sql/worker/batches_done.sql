-- Forgets batches (subscription $1, batch $2) whose outcome this transaction records: retried,
-- their events carry the batch from now on (reschedule.sql); delivered or dead, they are gone.
DELETE FROM webhook._batches_out b
 USING unnest($1::pg_catalog.int4[], $2::pg_catalog.int8[]) AS u(subscription_id, batch)
 WHERE b.subscription_id = u.subscription_id AND b.batch = u.batch
