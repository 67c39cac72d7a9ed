-- The next callbacks to run ($1 of them), with what each needs to be called: the subscription's
-- owner and callback function (by OID, never by name), whether that function still exists, and
-- how many times a runner started it before; the callback's signature, to name it by; last,
-- where that function is gone, whether a function of that signature exists now (made again
-- after the drop, or restored under another owner: never called for it, and the failure says
-- so). Only those of subscriptions owned by $3, and
-- those that call nothing (the subscription or its callback is gone, or it is an orphan whose
-- owner's role was dropped: no function, and the last column says so): a runner process calls
-- one owner's callbacks only (see owners_waiting.sql). Not those whose callback OID was read in
-- another cluster or copy of the database (pg_upgrade, a restore): they wait until the worker
-- binds it again (rebind_callbacks.sql), rather than call whatever has that OID here.
--
-- Taken in turn from each subscription with callbacks waiting — the oldest of each, then the
-- second of each, and so on, each turn starting after subscription $2 (the one whose callback
-- ran last: a batch that stopped after a slow callback is read again, and must not start with
-- that subscription's next) — so one subscription's slow callbacks (each may take up to
-- pg_webhook.callback_timeout) delay the others' by one of theirs at a time, not by all of
-- them. The subscriptions are found by skipping through the index on (subscription_id,
-- event_id), one probe each, and each gives its oldest $1 / (subscriptions) (at least one).
WITH RECURSIVE waiting(id) AS (
    (SELECT c.subscription_id FROM webhook._callback_queue c
      ORDER BY c.subscription_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.subscription_id FROM webhook._callback_queue c
             WHERE c.subscription_id OPERATOR(pg_catalog.>) w.id
             ORDER BY c.subscription_id LIMIT 1)
      FROM waiting w
     WHERE w.id IS NOT NULL
), here AS MATERIALIZED (
    SELECT webhook._binding_key() AS key
), subscriptions AS (
    SELECT w.id
      FROM waiting w
      CROSS JOIN here
      LEFT JOIN webhook._subscriptions s ON s.id = w.id
     WHERE w.id IS NOT NULL
       AND (s.callback IS NULL OR s.owner_dropped
            OR (s.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $3::pg_catalog.oid
                AND s.callback_bound_in OPERATOR(pg_catalog.=) here.key))
), share AS (
    SELECT GREATEST(1, $1 OPERATOR(pg_catalog./) GREATEST(1, pg_catalog.count(*))) AS each
      FROM subscriptions
)
SELECT c.event_id, c.subscription_id, s.owner::pg_catalog.oid,
       CASE WHEN NOT s.owner_dropped THEN s.callback_oid END,
       p.oid IS NOT NULL, c.starts, COALESCE(s.owner_dropped AND s.callback IS NOT NULL, false),
       s.callback,
       -- Not a callback kept as its function's OID in text (see rebind_callbacks.sql), on
       -- which to_regprocedure() would fail.
       CASE WHEN p.oid IS NULL AND s.callback OPERATOR(pg_catalog.~~) '%)'
            THEN pg_catalog.to_regprocedure(s.callback) IS NOT NULL END
  FROM subscriptions w
 CROSS JOIN share
 CROSS JOIN LATERAL (
       SELECT q.event_id, q.subscription_id, q.starts,
              pg_catalog.row_number() OVER (ORDER BY q.event_id) AS turn
         FROM (SELECT q.event_id, q.subscription_id, q.starts
                 FROM webhook._callback_queue q
                WHERE q.subscription_id = w.id
                ORDER BY q.event_id
                LIMIT share.each) q) c
  LEFT JOIN webhook._subscriptions s ON s.id = c.subscription_id
  LEFT JOIN pg_catalog.pg_proc p ON p.oid = s.callback_oid
 ORDER BY c.turn, w.id OPERATOR(pg_catalog.<=) $2::pg_catalog.int4, w.id
 LIMIT $1
