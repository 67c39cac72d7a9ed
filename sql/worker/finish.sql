-- Moves finished events (keyed by txid $1 and id $2) to the archive with their last attempt,
-- and queues the callbacks of those whose subscription has one, in one statement. Events that
-- vanished meanwhile (unsubscribed with discard) are skipped. Adds them to this worker's
-- running totals (webhook._delivery_totals). The outcome travels with each deleted row
-- (RETURNING reads the unnest row it was matched with), so nothing is joined twice.
--
-- Where the claim found each row ($13, its ctid; NULL if not known) saves the key index's
-- descent (in a profile of a batched drain, an eighth of recording). Where it knows some and
-- no callback is to be queued, the worker moves those rows without this statement
-- (src/queue/archive/: fetched at the ctid, the key checked there, deleted, archived) and
-- adds them to its totals (add_totals.sql); with callbacks, or where archive/ declines the
-- tables, it runs this statement with the marker below made `q.ctid = u.tid AND`, so only a
-- row still there with the same key matches. Either way, if fewer rows were archived than it
-- asked for (a row updated since, say paused, or moved by VACUUM FULL or pg_repack, or gone),
-- it runs this statement again by key alone for all of them (those archived already are gone
-- from the queue by then).
--
-- An event id is archived once: ids come from a sequence and replay takes the archive row out.
-- The batch statement relies on it and inserts plainly (ON CONFLICT's speculative insertion
-- cost a third more per archive row). Should an id be archived already all the same (rows
-- written by hand, a sequence set back), the batch fails on the key and the worker records its
-- outcomes one at a time with the marker below made ON CONFLICT (id) DO NOTHING: the event
-- leaves the queue and the archive row already there stays.
WITH done AS (
    DELETE FROM webhook._event_queue q
     USING unnest($1::pg_catalog.int8[], $2::pg_catalog.int8[],
                  $3::pg_catalog.text[], $4::pg_catalog.int4[],
                  $5::pg_catalog.text[], $6::pg_catalog.float8[],
                  $7::pg_catalog.float8[], $8::pg_catalog.int4[],
                  $9::pg_catalog.text[], $10::pg_catalog.text[],
                  $11::pg_catalog.bool[], $12::pg_catalog.text[], $13::pg_catalog.tid[])
           AS u(txid, id, status, attempts, last_error, started, duration_ms, status_code,
                excerpt, error, callback, headers, tid)
     WHERE /*at*/ q.txid = u.txid::pg_catalog.text::pg_catalog.xid8 AND q.id = u.id
 RETURNING q.id, q.subscription_id, q.op, q.table_schema, q.table_name, q.record,
           q.old_record, q.created_at, q.series_start, q.payload_bytes, q.order_key, q.timeline,
           u.status, u.attempts, u.last_error, u.started, u.duration_ms, u.status_code,
           u.excerpt, u.error, u.callback, u.headers
), callbacks AS (
    INSERT INTO webhook._callback_queue (event_id, subscription_id, response_headers)
    SELECT d.id, d.subscription_id, d.headers::pg_catalog.jsonb
      FROM done d
     -- The first condition holds for the whole batch or for none of it: without a callback in
     -- the batch, the finished events are not read a further time to find none.
     WHERE true = ANY ($11::pg_catalog.bool[]) AND d.callback
        ON CONFLICT (event_id) DO NOTHING
), counted AS (
    INSERT INTO webhook._delivery_totals AS t
           (subscription_id, worker, delivered, dead, failed_attempts)
    SELECT d.subscription_id, /*worker*/,
           count(*) FILTER (WHERE d.status = 'delivered'),
           count(*) FILTER (WHERE d.status = 'dead'),
           count(*) FILTER (WHERE d.status = 'dead')
      FROM done d
     GROUP BY d.subscription_id
        ON CONFLICT (subscription_id, worker) DO UPDATE
       SET delivered = t.delivered + excluded.delivered,
           dead = t.dead + excluded.dead,
           failed_attempts = t.failed_attempts + excluded.failed_attempts
)
INSERT INTO webhook._event_archive
       (id, subscription_id, op, table_schema, table_name, record, old_record, created_at,
        attempts, series_start, last_error, status, final_started_at, final_duration_ms,
        final_status_code, final_response_excerpt, final_error, payload_bytes, order_key,
        timeline)
SELECT d.id, d.subscription_id, d.op, d.table_schema, d.table_name, d.record, d.old_record,
       d.created_at, d.attempts, d.series_start, d.last_error, d.status,
       pg_catalog.to_timestamp(d.started),
       d.duration_ms, d.status_code, d.excerpt, d.error, d.payload_bytes, d.order_key,
       d.timeline
  FROM done d
/*archived already*/
