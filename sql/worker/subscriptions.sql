-- The delivery settings of every subscription but those unsubscribed and drained (no event of
-- theirs left in the queue: see drained.sql), and why its owner may no longer read its whole
-- table (NULL: it may; see webhook._owner_access).
SELECT s.id, s.uid, s.url, s.secret, s.headers::pg_catalog.text,
       (extract(epoch FROM s.timeout) * 1000)::pg_catalog.int8,
       s.max_attempts,
       (SELECT pg_catalog.array_agg((extract(epoch FROM d) * 1000)::pg_catalog.int8
                                    ORDER BY o)
          FROM unnest(s.retry_schedule) WITH ORDINALITY AS u(d, o)),
       s.status,
       CASE WHEN s.previous_secret_expires_at > pg_catalog.now() THEN s.previous_secret END,
       s.failing_since IS NOT NULL,
       s.format,
       s.ordered, s.max_in_flight, s.rate_limit, s.callback IS NOT NULL,
       o.denied,
       s.name, s.batch_size, (extract(epoch FROM s.batch_wait) * 1000)::pg_catalog.int8,
       s.order_key IS NOT NULL, s.group_by IS NOT NULL,
       s.client_cert, s.client_key, s.auth::pg_catalog.text,
       -- Noted: held for its owner's access, and marked an orphan if its owner's role is gone.
       s.read_denied AND (s.owner_dropped
                          OR EXISTS (SELECT FROM pg_catalog.pg_authid a
                                      WHERE a.oid OPERATOR(pg_catalog.=) s.owner::pg_catalog.oid)),
       -- Whose it is: a worker's requests are shared between owners (src/worker/plan/owners.rs).
       s.owner::pg_catalog.oid
  FROM webhook._subscriptions s
  JOIN webhook._owner_access o ON o.id = s.id
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed' OR NOT s.drained
