-- Milliseconds until the earliest scheduled retry; due-now ones are being claimed already.
-- Parked events ('infinity') are never due, and PostgreSQL 15 refuses to subtract an infinite
-- timestamp: left in, one parked event failed every claim that looked for retries.
SELECT (extract(epoch FROM pg_catalog.min(q.next_attempt_at)
                                      - pg_catalog.clock_timestamp()) * 1000)::pg_catalog.float8
  FROM webhook._event_queue q
 WHERE q.next_attempt_at > pg_catalog.now() AND q.next_attempt_at < 'infinity'
