-- Cuts (some of) a transaction ($1 txid) of a subscription ($2) into parts: event ids $3, in
-- order, go in parts $4, and those of its last part learn how many events the transaction has
-- ($5; NULL for the others: the count is read as the largest its queued events carry, see
-- transaction_size.sql). Cut again (its next part over a payload limit lowered since), its
-- events keep the count the first cut gave them: the events finished before are part of the
-- transaction too.
--
-- The ids bound the rows read to theirs: a plan that hashed the transaction's queued events
-- (chosen while its rows are not analyzed yet) read all of them for every statement, and a
-- transaction of a million events took the worker over ten minutes to cut.
UPDATE webhook._event_queue q
   SET part = u.part, tx_events = COALESCE(q.tx_events, $5)
  FROM unnest($3::pg_catalog.int8[], $4::pg_catalog.int4[]) AS u(id, part)
 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2 AND q.id = u.id
   AND q.id OPERATOR(pg_catalog.>=) $3[1]
   AND q.id OPERATOR(pg_catalog.<=) $3[pg_catalog.array_upper($3, 1)]
