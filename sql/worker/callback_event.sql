-- The event one callback ($1) receives, built in the callback's own transaction so that one
-- event's data can only fail its own callback. NULL when the event left the archive (purged by
-- retention, or replayed and back in the queue): then there is nothing to run. Row images
-- larger than $2 bytes are left out (record and old_record null, images_omitted true). The
-- webhook-id is the event's own (src/core/payload.rs, message_id), even if it went in a batch.
-- As text, which the runner reads back with jsonb's input function: numbers keep every digit.
-- Events archived before 0.3.0 have no size recorded: their images are counted as text then.
SELECT pg_catalog.jsonb_build_object(
           'event_id', a.id,
           'webhook_id', 'msg_' || s.uid || '_' || a.id
                         || CASE WHEN a.timeline = 1 THEN '' ELSE '.' || a.timeline END,
           'subscription', s.name, 'subscription_id', s.id,
           'schema', a.table_schema, 'table', a.table_name, 'op', a.op,
           'record', CASE WHEN b.bytes <= $2 THEN a.record END,
           'old_record', CASE WHEN b.bytes <= $2 THEN a.old_record END,
           'images_omitted', b.bytes > $2,
           'status', a.status, 'attempts', a.attempts,
           'status_code', a.final_status_code,
           'response_headers', c.response_headers,
           'response_body', a.final_response_excerpt,
           'error', COALESCE(a.final_error, a.last_error),
           'finished_at', a.finished_at)::pg_catalog.text
  FROM webhook._callback_queue c
  JOIN webhook._event_archive a ON a.id = c.event_id
  JOIN webhook._subscriptions s ON s.id = c.subscription_id
 CROSS JOIN LATERAL (SELECT COALESCE(NULLIF(a.payload_bytes, 0),
                                     webhook._image_bytes(a.record, a.old_record)) AS bytes) b
 WHERE c.event_id = $1
