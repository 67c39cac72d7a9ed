-- Cuts a transaction ($1 txid) of a subscription ($2) into parts: event ids $3 go in parts $4,
-- and every event learns how many the transaction has ($5). Cut again (its next part over a
-- payload limit lowered since), its events keep the count the first cut gave them: the events
-- finished before are part of the transaction too.
UPDATE webhook._event_queue q
   SET part = u.part, tx_events = COALESCE(q.tx_events, $5)
  FROM unnest($3::pg_catalog.int8[], $4::pg_catalog.int4[]) AS u(id, part)
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2 AND q.id = u.id
