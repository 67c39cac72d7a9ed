-- Events of one transaction ($1 txid) for one subscription ($2) after id $3, in id (statement)
-- order, at most $4 and no more than $6 bytes of row images (the first always), for cutting
-- the transaction into parts. Images larger than $5 are not read (see claim_new.sql). Without
-- the byte budget a page of 1,000 events of 4 MiB each was read whole: gigabytes of text.
-- webhook._claim_room counts the bytes in id order (see claim_new.sql), of the images read
-- only (counting the others made pages of a few events, each statement walking a thousand);
-- rows past the budget are left to the next page.
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.payload_bytes <= $5 THEN e.record::pg_catalog.text END,
       CASE WHEN e.payload_bytes <= $5 THEN e.old_record::pg_catalog.text END, e.attempts,
       e.series_start, e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline
  FROM (SELECT p.*,
               webhook._claim_room(CASE WHEN p.payload_bytes <= $5 THEN p.payload_bytes
                                        ELSE 0 END, $6) AS room
          FROM (SELECT q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id,
                       q.subscription_id, q.op, q.table_schema, q.table_name, q.record,
                       q.old_record, q.attempts, q.series_start, q.created_at,
                       q.payload_bytes, q.batch, q.timeline, q.tx_timeline
                  FROM webhook._event_queue q
                 WHERE q.txid = $1::pg_catalog.text::pg_catalog.xid8 AND q.subscription_id = $2
                   AND q.id > $3
                 ORDER BY q.id
                 LIMIT $4) p) e
 WHERE e.room = 0
 ORDER BY e.id
