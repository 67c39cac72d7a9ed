-- Marks unsubscribed subscriptions with no event left in the queue drained, so the worker no
-- longer loads them (subscriptions.sql): every subscription ever made was read and parsed at
-- each load, once a second, and thousands unsubscribed over time cost an idle worker a third
-- of a core. Unsubscribed, a subscription gets no new event (its triggers are gone, and
-- replay() refuses it), but a transaction that had not committed when this looked may still
-- bring one: drained subscriptions whose events are due, parked, retried or ordered are found
-- here through the queue's indexes and marked back; a new event is found by the claim that
-- reads it (undrain.sql). Rows another transaction holds are left for the next round. Returns
-- how many it marked back and how many drained. Run by worker 0 every few seconds.
WITH back AS (
    UPDATE webhook._subscriptions s
       SET drained = false
     WHERE s.id IN (SELECT l.id FROM webhook._subscriptions l
                     WHERE l.drained
                       AND (EXISTS (SELECT FROM webhook._event_queue q
                                     WHERE q.subscription_id OPERATOR(pg_catalog.=) l.id
                                       AND q.next_attempt_at IS NOT NULL)
                            OR EXISTS (SELECT FROM webhook._event_queue q
                                        WHERE q.subscription_id OPERATOR(pg_catalog.=) l.id
                                          AND q.ordered))
                       FOR UPDATE SKIP LOCKED)
 RETURNING s.id
), candidates AS MATERIALIZED (
    -- Those with events the indexes find are not drained, and need no pass over the queue (one
    -- whose events stay parked would make one every round).
    SELECT s.id
      FROM webhook._subscriptions s
     WHERE s.status OPERATOR(pg_catalog.=) 'unsubscribed' AND NOT s.drained
       AND NOT EXISTS (SELECT FROM webhook._event_queue q
                        WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id
                          AND q.next_attempt_at IS NOT NULL)
       AND NOT EXISTS (SELECT FROM webhook._event_queue q
                        WHERE q.subscription_id OPERATOR(pg_catalog.=) s.id AND q.ordered)
), queued AS MATERIALIZED (
    -- One pass over the queue, and none without candidates (new events have no index by
    -- subscription: one would cost every captured write).
    SELECT DISTINCT q.subscription_id
      FROM webhook._event_queue q
     WHERE EXISTS (SELECT FROM candidates)
       AND q.subscription_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.id FROM candidates c))
), marked AS (
    UPDATE webhook._subscriptions s
       SET drained = true
     WHERE s.id IN (SELECT l.id FROM webhook._subscriptions l
                     WHERE l.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.id FROM candidates c))
                       AND l.status OPERATOR(pg_catalog.=) 'unsubscribed' AND NOT l.drained
                       AND NOT EXISTS (SELECT FROM queued d
                                        WHERE d.subscription_id OPERATOR(pg_catalog.=) l.id)
                       FOR UPDATE SKIP LOCKED)
 RETURNING s.id
)
SELECT (SELECT pg_catalog.count(*) FROM back), (SELECT pg_catalog.count(*) FROM marked)
