-- How many parts and events a transaction ($1 txid) has for a subscription ($2): the last part
-- is always still queued (parts go in order), and its events are the ones the cut told the
-- count (see set_parts.sql).
SELECT pg_catalog.max(q.part), pg_catalog.max(q.tx_events)
  FROM webhook._event_queue q
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2
