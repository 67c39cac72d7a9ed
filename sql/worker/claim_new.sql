-- New events after the worker's cursor ($1 txid, $2 id) in key order: at most $3 of them, and
-- no more than $5 bytes of row images (the first one always, however large), so a backlog of
-- large rows cannot make one claim load them all. Events are shared out by id among the
-- workers, except those of pinned subscriptions ($4: with limits of their own), which go whole
-- to one worker; the slice marker below is that condition (empty with one worker). Ordered events are
-- claimed apart. The row images stay in the heap (toasted) until a row is taken, and
-- are not read at all when larger than $6 (such an event cannot be sent, and turning a huge
-- image into text could exceed PostgreSQL's 1 GB limit and fail every claim).
--
-- webhook._claim_room counts the bytes as the page comes out of the index, in key order (see
-- src/queue/room.rs); its last column says what it made of the row: 0 taken, 1 the first row
-- past the budget (returned without images: the worker must not take a page cut short by
-- bytes for the end of the queue), later rows are left out. The function is volatile, so the
-- subquery that calls it is run as written, once per row, after the LIMIT. The ctid comes
-- last, for recording the outcome (see finish.sql).
SELECT e.txid, e.id, e.subscription_id, e.op, e.table_schema, e.table_name,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $6 THEN e.record::pg_catalog.text END,
       CASE WHEN e.room = 0 AND e.payload_bytes <= $6 THEN e.old_record::pg_catalog.text END,
       e.attempts, e.series_start,
       e.created_at, e.payload_bytes, e.batch, e.timeline, e.tx_timeline, e.room, e.tid
  FROM (SELECT p.*, webhook._claim_room(COALESCE(p.payload_bytes, 0), $5) AS room
          FROM (SELECT q.ctid AS tid, q.txid::pg_catalog.text::pg_catalog.int8 AS txid, q.id,
                       q.subscription_id,
                       q.op, q.table_schema, q.table_name, q.record, q.old_record, q.attempts,
                       q.series_start, q.created_at, q.payload_bytes, q.batch,
                       q.timeline, q.tx_timeline
                  FROM webhook._event_queue q
                 WHERE q.next_attempt_at IS NULL
                   AND (q.txid, q.id) > ($1::pg_catalog.text::pg_catalog.xid8, $2)
                   AND NOT q.ordered
                   /*slice*/
                 ORDER BY q.txid, q.id
                 LIMIT $3) p) e
 WHERE e.room < 2
