-- A transaction ($1 txid) of a subscription ($2) is to be cut again from one of its parts on,
-- over several claims (see src/worker/cutting.rs): its last queued event, which tells the
-- transaction's size (transaction_size.sql), is marked as being cut by the size made negative,
-- so that the transaction does not look cut half-way — to this worker's next claims, or to a
-- worker that takes over from one stopped in the middle, which cuts it again from its lowest
-- part — and the size survives to be told again when the cut is done. Returns the size.
UPDATE webhook._event_queue q
   SET tx_events = -pg_catalog.abs(q.tx_events)
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2
   AND q.id = (SELECT l.id FROM webhook._event_queue l
                WHERE l.txid = $1::pg_catalog.text::pg_catalog.xid8 AND l.subscription_id = $2
                ORDER BY l.id DESC
                LIMIT 1)
RETURNING pg_catalog.abs(q.tx_events)
