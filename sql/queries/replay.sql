-- Moves finished events of a subscription ($1) back into the queue as a new attempt series with
-- the same webhook-id: one event ($2), those captured since a time ($3), or only the dead ones
-- ($4). Their last attempt is kept in the attempt log. Events archived before 0.3.0 have no
-- recorded size: their images are counted as text (webhook._image_bytes), so claims stay
-- bounded. An event of an ordered
-- subscription keeps its order key (0, one key, for those archived before 0.3.0); those of a
-- subscription grouped by transaction go as a transaction of their own, the replay's, which
-- runs on the WAL timeline $5; each event keeps the timeline it was captured on (both are part
-- of webhook-ids).
WITH moved AS (
    DELETE FROM webhook._event_archive a
     WHERE a.subscription_id = $1
       AND ($2::pg_catalog.int8 IS NULL OR a.id = $2)
       AND ($3::pg_catalog.timestamptz IS NULL OR a.created_at >= $3)
       AND (NOT $4 OR a.status = 'dead')
 RETURNING a.*
), kept AS (
    INSERT INTO webhook._attempts
           (event_id, attempt, subscription_id, started_at, duration_ms, status_code,
            response_excerpt, error, outcome)
    SELECT id, attempts, subscription_id, final_started_at, final_duration_ms,
           final_status_code, final_response_excerpt, final_error, status
      FROM moved WHERE final_started_at IS NOT NULL
        ON CONFLICT (event_id, attempt) DO NOTHING
)
INSERT INTO webhook._event_queue
       (id, txid, subscription_id, op, table_schema, table_name, record, old_record,
        created_at, attempts, series_start, next_attempt_at, last_error, ordered, payload_bytes,
        order_key, timeline, tx_timeline)
SELECT m.id, pg_catalog.pg_current_xact_id(), m.subscription_id, m.op, m.table_schema,
       m.table_name, m.record, m.old_record, m.created_at, m.attempts, m.attempts,
       pg_catalog.now(), m.last_error,
       s.ordered OR s.order_key IS NOT NULL OR s.group_by IS NOT NULL,
       COALESCE(NULLIF(m.payload_bytes, 0), webhook._image_bytes(m.record, m.old_record)),
       CASE WHEN s.ordered OR s.order_key IS NOT NULL OR s.group_by IS NOT NULL
            THEN COALESCE(m.order_key, 0) END,
       m.timeline, $5
  FROM moved m JOIN webhook._subscriptions s ON s.id = m.subscription_id
