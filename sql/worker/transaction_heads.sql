-- For each subscription grouped by transaction ($1, in the order given, with $2 the most to
-- return for each): the transactions with events queued whose lowest part still queued may go
-- now, oldest first: among the subscription's first 5000 queued events in id order, each
-- transaction with that part (parts go in order; NULL: not cut into parts yet). A transaction
-- whose lowest part waits for a retry (or is parked) is left out here, so failing transactions
-- never take the places of those that may go; decided from the window's own rows (its events
-- share their attempts), not by reading the queue again. One statement for the subscriptions a
-- claim asks about (see worker/claim/others.rs grouped_parts): a probe of the index each.
SELECT s.id, t.txid, t.lowest, t.uncut
  FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.int8[]) WITH ORDINALITY AS s(id, most, n)
 CROSS JOIN LATERAL (
       SELECT w.txid::pg_catalog.text::pg_catalog.int8 AS txid, w.lowest,
              pg_catalog.bool_or(w.part IS NULL) AS uncut, pg_catalog.min(w.id) AS first
         FROM (SELECT h.txid, h.id, h.part, h.next_attempt_at,
                      pg_catalog.min(h.part) OVER (PARTITION BY h.txid) AS lowest
                 FROM (SELECT c.txid, c.id, c.part, c.next_attempt_at
                         FROM webhook._event_queue c
                        WHERE c.ordered AND c.subscription_id = s.id
                        ORDER BY c.id LIMIT 5000) h) w
        GROUP BY w.txid, w.lowest
       HAVING NOT COALESCE(pg_catalog.bool_or(w.part IS NOT DISTINCT FROM w.lowest
                                              AND w.next_attempt_at > pg_catalog.now()), false)
        ORDER BY pg_catalog.min(w.id)
        LIMIT s.most) t
 ORDER BY s.n, t.first
