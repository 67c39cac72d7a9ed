-- The events of these ordered subscriptions ($1, with $2 the most to return for each) that may
-- go now: the due events with no earlier event of the same order key (0 for `ordered => true`:
-- the whole subscription is one key), oldest first. A head in flight is returned too (the
-- worker skips what it owns), and holds back the rest of its key; so does any other event of
-- its key in flight ($4: the events of these subscriptions the worker has out) — a replayed
-- event keeps its id, so it can become its key's head while a later event of the key is out.
--
-- Heads are looked for among each subscription's first 1000 queued events in id order (id
-- order is commit order per order key, see capture.rs), and among the heads of up to 64 keys
-- taken from a random point of the key space on (wrapping around): a key whose head fails,
-- with a long backlog behind it, fills the first window, and the second still finds the other
-- keys' heads within a few claims. Found through the partial indexes on ordered events. Images
-- larger than $3 are not read (see claim_new.sql), nor those of the heads the worker has out,
-- which it skips: each claim read them again while they were out, up to 4 MiB of text each.
-- The images read stay within $5 bytes (the first head's always), counted by
-- webhook._claim_room in the order the heads come out (see claim_new.sql): every key of a keyed
-- subscription can have a head of up to max_payload_bytes, and the worker's share of bytes
-- lets few of them start, so a claim read hundreds of them again and again to start a couple.
-- Heads past the budget are left for a later claim. The ctid comes last, for recording the
-- outcome (see finish.sql).
WITH heads AS (
      SELECT q.*, q.payload_bytes <= $3 AND q.id <> ALL ($4::pg_catalog.int8[]) AS reads
      FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.int4[]) AS s(id, most)
     -- The keys with an event out other than their head, found once per subscription.
     CROSS JOIN LATERAL (
           SELECT COALESCE(pg_catalog.array_agg(DISTINCT f.order_key), '{}') AS busy
             FROM webhook._event_queue f
            WHERE f.ordered AND f.subscription_id = s.id
              AND f.id = ANY ($4::pg_catalog.int8[])) b
     CROSS JOIN LATERAL (
           SELECT DISTINCT ON (h.id) h.*
             FROM ((SELECT c.ctid AS tid, c.* FROM webhook._event_queue c
                     WHERE c.ordered AND c.subscription_id = s.id
                     ORDER BY c.id LIMIT 1000)
                   UNION ALL
                   (WITH RECURSIVE start(at) AS (
                        SELECT ((pg_catalog.random() OPERATOR(pg_catalog.-) 0.5)
                                OPERATOR(pg_catalog.*) 1.8e19)::pg_catalog.int8
                    ),
                    keys(order_key, n, wrapped) AS (
                        SELECT COALESCE(
                                   (SELECT pg_catalog.min(e.order_key) FROM webhook._event_queue e
                                     WHERE e.ordered AND e.subscription_id = s.id
                                       AND e.order_key OPERATOR(pg_catalog.>=) start.at),
                                   (SELECT pg_catalog.min(e.order_key) FROM webhook._event_queue e
                                     WHERE e.ordered AND e.subscription_id = s.id)),
                               1,
                               NOT EXISTS (SELECT 1 FROM webhook._event_queue e
                                            WHERE e.ordered AND e.subscription_id = s.id
                                              AND e.order_key OPERATOR(pg_catalog.>=) start.at)
                          FROM start
                        UNION ALL
                        SELECT nx.order_key, k.n OPERATOR(pg_catalog.+) 1, nx.wrapped
                          FROM keys k
                         CROSS JOIN start
                         CROSS JOIN LATERAL (
                               SELECT COALESCE(a.order_key, CASE WHEN NOT k.wrapped THEN b.order_key END)
                                          AS order_key,
                                      k.wrapped OR a.order_key IS NULL AS wrapped
                                 FROM (SELECT pg_catalog.min(e.order_key) AS order_key
                                         FROM webhook._event_queue e
                                        WHERE e.ordered AND e.subscription_id = s.id
                                          AND e.order_key OPERATOR(pg_catalog.>) k.order_key) a,
                                      (SELECT pg_catalog.min(e.order_key) AS order_key
                                         FROM webhook._event_queue e
                                        WHERE e.ordered AND e.subscription_id = s.id) b) nx
                         WHERE k.order_key IS NOT NULL AND k.n OPERATOR(pg_catalog.<) 64
                           AND nx.order_key IS NOT NULL
                           AND NOT (nx.wrapped AND nx.order_key OPERATOR(pg_catalog.>=) start.at)
                    )
                    SELECT c.*
                      FROM keys
                     CROSS JOIN LATERAL (SELECT c.ctid AS tid, c.* FROM webhook._event_queue c
                                          WHERE c.ordered AND c.subscription_id = s.id
                                            AND c.order_key OPERATOR(pg_catalog.=) keys.order_key
                                          ORDER BY c.id LIMIT 1) c)) h
            WHERE (h.next_attempt_at IS NULL OR h.next_attempt_at <= pg_catalog.now())
              AND NOT EXISTS (SELECT 1 FROM webhook._event_queue e
                               WHERE e.ordered AND e.subscription_id = h.subscription_id
                                 AND e.order_key = h.order_key AND e.id < h.id)
              AND (h.id = ANY ($4::pg_catalog.int8[]) OR h.order_key <> ALL (b.busy))
            ORDER BY h.id
            LIMIT s.most) q)
SELECT r.txid::pg_catalog.text::pg_catalog.int8, r.id, r.subscription_id, r.op, r.table_schema,
       r.table_name, CASE WHEN r.reads THEN r.record::pg_catalog.text END,
       CASE WHEN r.reads THEN r.old_record::pg_catalog.text END, r.attempts,
       r.series_start, r.created_at, r.payload_bytes, r.batch, r.timeline, r.tx_timeline, r.tid
  FROM (SELECT h.*,
               webhook._claim_room(CASE WHEN h.reads THEN COALESCE(h.payload_bytes, 0) ELSE 0 END,
                                   $5) AS room
          FROM heads h) r
 WHERE r.room = 0
