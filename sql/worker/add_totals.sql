-- Adds events archived without finish.sql (src/queue/archive/) to this worker's running
-- totals: per subscription ($1), how many were delivered ($2) and how many are dead ($3), as
-- finish.sql's `counted` does for the events it archives.
INSERT INTO webhook._delivery_totals AS t
       (subscription_id, worker, delivered, dead, failed_attempts)
SELECT u.subscription_id, /*worker*/, u.delivered, u.dead, u.dead
  FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.int8[], $3::pg_catalog.int8[])
       AS u(subscription_id, delivered, dead)
    ON CONFLICT (subscription_id, worker) DO UPDATE
   SET delivered = t.delivered + excluded.delivered,
       dead = t.dead + excluded.dead,
       failed_attempts = t.failed_attempts + excluded.failed_attempts
