-- How many parts and events a transaction ($1 txid) has for a subscription ($2), as its last
-- queued event says: the last part is always still queued (parts go in order), and every event
-- of it was told the count (see set_parts.sql); NULL while the transaction is first cut, and
-- the count made negative while it is cut again (see reopen_cut.sql). Read from that one row
-- (the key index walked back from the transaction's end), not from all of them: every part of
-- a transaction of a million events read all its queued rows again.
SELECT q.part, q.tx_events
  FROM webhook._event_queue q
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2
 ORDER BY q.id DESC
 LIMIT 1
