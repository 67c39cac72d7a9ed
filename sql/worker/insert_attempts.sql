-- Logs attempts that will be followed by another (the last one is kept on the archive row),
-- and counts those logged in this worker's running totals of failed attempts.
WITH logged AS (
    INSERT INTO webhook._attempts
           (event_id, attempt, subscription_id, started_at, duration_ms, status_code,
            response_excerpt, error, outcome)
    SELECT u.event_id, u.attempt, u.subscription_id, pg_catalog.to_timestamp(u.started),
           u.duration_ms, u.status_code, u.excerpt, u.error, 'retry'
      FROM unnest($1::pg_catalog.int8[], $2::pg_catalog.int4[], $3::pg_catalog.int4[],
                  $4::pg_catalog.float8[], $5::pg_catalog.float8[], $6::pg_catalog.int4[],
                  $7::pg_catalog.text[], $8::pg_catalog.text[])
           AS u(event_id, attempt, subscription_id, started, duration_ms, status_code,
                excerpt, error)
        ON CONFLICT (event_id, attempt) DO NOTHING
    RETURNING subscription_id
)
INSERT INTO webhook._delivery_totals AS t (subscription_id, worker, failed_attempts)
SELECT l.subscription_id, /*worker*/, count(*)
  FROM logged l
 GROUP BY l.subscription_id
    ON CONFLICT (subscription_id, worker) DO UPDATE
   SET failed_attempts = t.failed_attempts + excluded.failed_attempts
