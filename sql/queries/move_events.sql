-- Gives this transaction's ($1) events with ids $2 the ids $3, pairwise (see nested_events.sql).
UPDATE webhook._event_queue AS q
   SET id = m.new
  FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.int8[]))
       AS m (old, new)
 WHERE q.txid OPERATOR(pg_catalog.=) $1
   AND q.id OPERATOR(pg_catalog.=) m.old
