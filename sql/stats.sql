-- pg_webhook: webhook.subscription_stats, the health view, and what monitoring roles may call.

-- API: Public. Health at a glance, one row per visible subscription. One pass over the (small)
-- queue and index range scans over the last hour of history: cheap enough to poll every few
-- seconds. Latency is from the writing transaction's start to the end of the successful
-- request.
CREATE VIEW webhook.subscription_stats WITH (security_barrier) AS
WITH queued AS (
    SELECT q.subscription_id,
           count(*) FILTER (WHERE q.next_attempt_at IS DISTINCT FROM 'infinity') AS queued,
           count(*) FILTER (WHERE q.next_attempt_at = 'infinity') AS parked,
           count(*) FILTER (WHERE q.attempts > 0) AS retrying,
           now() - min(q.created_at) AS oldest_queued_age
      FROM webhook._event_queue q
     GROUP BY q.subscription_id
), finished AS (
    SELECT a.subscription_id,
           count(*) FILTER (WHERE a.status = 'delivered') AS delivered_last_hour,
           count(*) FILTER (WHERE a.status = 'dead') AS dead_last_hour,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM a.final_started_at - a.created_at) * 1000 + a.final_duration_ms)
               FILTER (WHERE a.status = 'delivered') AS latency_p50_ms,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY
               extract(epoch FROM a.final_started_at - a.created_at) * 1000 + a.final_duration_ms)
               FILTER (WHERE a.status = 'delivered') AS latency_p99_ms
      FROM webhook._event_archive a
     WHERE a.finished_at > now() - interval '1 hour'
     GROUP BY a.subscription_id
), failed AS (
    SELECT t.subscription_id, count(*) AS failed_attempts_last_hour,
           (array_agg(COALESCE(t.error, 'HTTP ' || t.status_code) ORDER BY t.started_at DESC))[1] AS last_error,
           (array_agg(COALESCE('HTTP ' || t.status_code, 'no answer') ORDER BY t.started_at DESC))[1]
               AS last_status
      FROM webhook._attempts t
     WHERE t.started_at > now() - interval '1 hour' AND t.outcome <> 'delivered'
     GROUP BY t.subscription_id
), totals AS (
    SELECT t.subscription_id, sum(t.delivered) AS delivered, sum(t.dead) AS dead,
           sum(t.failed_attempts) AS failed_attempts
      FROM webhook._delivery_totals t
     GROUP BY t.subscription_id
)
SELECT s.id, s.name, s.status,
       CASE WHEN s.status = 'active'
                   AND NOT EXISTS (SELECT FROM webhook._triggers_made m
                                    WHERE m.subscription_id = s.id)
            -- Restored (webhook._triggers_made is not dumped), its triggers not seen complete.
            THEN 'restored: its capture triggers are not confirmed yet, and a table without them captures nothing; the delivery worker looks at them every 10 s and logs what is missing'
       WHEN s.status = 'active' AND o.trigger_name IS NOT NULL
            THEN pg_catalog.format('its capture trigger %s is disabled: changes to that table are not captured while it is (ALTER TABLE ... ENABLE TRIGGER turns it on again)', o.trigger_name)
       -- Why it was disabled for failing, without the error (the answer's status since 0.3.0,
       -- but 0.2.0 quoted the error itself), to those who do not manage it.
       WHEN NOT COALESCE(v.manages, false)
                AND s.status_reason LIKE 'endpoint failing since %; last error: %'
            THEN pg_catalog.split_part(s.status_reason, '; last error: ', 1)
            ELSE s.status_reason END AS status_reason,
       s.failing_since,
       COALESCE(q.queued, 0) AS queued,
       COALESCE(f.in_flight, 0)::bigint AS in_flight,
       COALESCE(q.parked, 0) AS parked,
       COALESCE(q.retrying, 0) AS retrying,
       q.oldest_queued_age,
       COALESCE(d.delivered_last_hour, 0) AS delivered_last_hour,
       COALESCE(x.failed_attempts_last_hour, 0) + COALESCE(d.dead_last_hour, 0) AS failed_last_hour,
       round(d.latency_p50_ms::numeric, 1) AS latency_p50_ms,
       round(d.latency_p99_ms::numeric, 1) AS latency_p99_ms,
       -- (An error may quote the endpoint's or a token endpoint's answer: see webhook.attempts.
       -- Monitoring roles see what it was: the status answered, or none.)
       CASE WHEN v.manages THEN x.last_error
            WHEN pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN x.last_status END
           AS last_error,
       COALESCE(t.delivered, 0)::bigint AS delivered_total,
       COALESCE(t.dead, 0)::bigint AS dead_total,
       COALESCE(t.failed_attempts, 0)::bigint AS failed_attempts_total
  -- The subscriptions the reader sees, chosen behind a fence (OFFSET 0) no condition of the
  -- reader's passes: one pushed down to the private table's scan (name = '...'), below the
  -- choice, made EXPLAIN ANALYZE's row counts answer guesses at subscriptions hidden from them.
  FROM (SELECT s0.id, s0.name, s0.status, s0.status_reason, s0.failing_since
          FROM webhook._subscriptions s0
          LEFT JOIN webhook._visible_subscriptions v0 ON v0.id = s0.id
         WHERE v0.id IS NOT NULL
            -- Monitoring roles (postgres_exporter) see every subscription's health, not its
            -- events.
            OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
        OFFSET 0) s
  LEFT JOIN queued q ON q.subscription_id = s.id
  LEFT JOIN finished d ON d.subscription_id = s.id
  LEFT JOIN failed x ON x.subscription_id = s.id
  LEFT JOIN totals t ON t.subscription_id = s.id
  LEFT JOIN webhook._in_flight() f ON f.subscription_id = s.id
  LEFT JOIN webhook._visible_subscriptions v ON v.id = s.id
  LEFT JOIN webhook._capture_off o ON o.subscription_id = s.id;
COMMENT ON VIEW webhook.subscription_stats IS
    'Per subscription: queued, in flight, parked (paused/disabled), retrying, oldest queued age, delivered and failed in the last hour, latency p50/p99 (ms, from the writing transaction to the 2xx), last error, status, and running totals of delivered events, dead events and failed attempts (counters for monitoring).';
GRANT SELECT ON webhook.subscription_stats TO webhook_admin;
GRANT USAGE ON SCHEMA webhook TO pg_monitor;
GRANT SELECT ON webhook.subscription_stats TO pg_monitor;
-- The exporter's query lists each delivery worker by it, to report whether it runs.
GRANT EXECUTE ON FUNCTION webhook._worker_count() TO pg_monitor;
COMMENT ON FUNCTION webhook._worker_count() IS 'Internal: how many delivery workers each database has (pg_webhook.workers, or the count its default resolved to from the CPUs), for monitoring.';
-- The exporter's query reports stuck callback runners with it.
GRANT EXECUTE ON FUNCTION webhook._stuck_runners() TO pg_monitor;
COMMENT ON FUNCTION webhook._stuck_runners() IS 'Internal: how many callback runners of this database are stuck in a call the watchdog cannot end (shared memory), for monitoring.';
COMMENT ON FUNCTION webhook._in_flight() IS 'Internal: requests the delivery workers have in flight (shared memory), per subscription the caller sees in webhook.subscription_stats.';
COMMENT ON COLUMN webhook.subscription_stats.id IS 'Subscription id.';
COMMENT ON COLUMN webhook.subscription_stats.name IS 'Subscription name.';
COMMENT ON COLUMN webhook.subscription_stats.status IS 'active, paused, disabled or unsubscribed.';
COMMENT ON COLUMN webhook.subscription_stats.status_reason IS 'Why the status is what it is.';
COMMENT ON COLUMN webhook.subscription_stats.failing_since IS 'Since when every attempt has failed; NULL after a success.';
COMMENT ON COLUMN webhook.subscription_stats.queued IS 'Events waiting for a first or further attempt (parked ones not counted).';
COMMENT ON COLUMN webhook.subscription_stats.in_flight IS 'Requests in flight right now.';
COMMENT ON COLUMN webhook.subscription_stats.parked IS 'Events held while the subscription is paused, disabled or may not read its table.';
COMMENT ON COLUMN webhook.subscription_stats.retrying IS 'Queued events that have failed at least once.';
COMMENT ON COLUMN webhook.subscription_stats.oldest_queued_age IS 'Age of the oldest queued event; NULL when none is queued.';
COMMENT ON COLUMN webhook.subscription_stats.delivered_last_hour IS 'Events delivered in the last hour.';
COMMENT ON COLUMN webhook.subscription_stats.failed_last_hour IS 'Failed attempts and dead events in the last hour.';
COMMENT ON COLUMN webhook.subscription_stats.latency_p50_ms IS 'Median time from the writing transaction''s start to the successful answer, last hour, ms.';
COMMENT ON COLUMN webhook.subscription_stats.latency_p99_ms IS '99th percentile of the same, ms.';
COMMENT ON COLUMN webhook.subscription_stats.last_error IS 'The latest failed attempt''s error, last hour; only the status answered (or no answer) for a member of pg_monitor who does not manage the subscription, NULL for other readers.';
COMMENT ON COLUMN webhook.subscription_stats.delivered_total IS 'Events delivered since the subscription was created (a counter: never decreases, not purged by retention; for one created before 0.3.0, counted from the history kept at the update).';
COMMENT ON COLUMN webhook.subscription_stats.dead_total IS 'Events that died (every attempt failed, or refused as unsendable) since the subscription was created (a counter).';
COMMENT ON COLUMN webhook.subscription_stats.failed_attempts_total IS 'Attempts that did not deliver (retried ones and dead events'' last ones) since the subscription was created (a counter).';
