-- The next callbacks to run ($1 of them), with what each needs: the subscription's owner and
-- callback function (by OID, never by name), whether that function still exists, and the event
-- as the callback receives it — NULL when the event is no longer in the archive (purged by
-- retention, or replayed and back in the queue), in which case there is nothing to run.
SELECT c.event_id, c.subscription_id, s.owner::pg_catalog.oid, s.callback::pg_catalog.oid,
       p.oid IS NOT NULL,
       CASE WHEN a.id IS NOT NULL THEN
           pg_catalog.jsonb_build_object(
               'event_id', a.id, 'webhook_id', 'msg_' || s.uid || '_' || a.id,
               'subscription', s.name, 'subscription_id', s.id,
               'schema', a.table_schema, 'table', a.table_name, 'op', a.op,
               'record', a.record, 'old_record', a.old_record,
               'status', a.status, 'attempts', a.attempts,
               'status_code', a.final_status_code,
               'response_headers', c.response_headers,
               'response_body', a.final_response_excerpt,
               'error', COALESCE(a.final_error, a.last_error),
               'finished_at', a.finished_at)::pg_catalog.text
       END
  FROM webhook._callback_queue c
  LEFT JOIN webhook._event_archive a ON a.id = c.event_id
  LEFT JOIN webhook._subscriptions s ON s.id = c.subscription_id
  LEFT JOIN pg_catalog.pg_proc p ON p.oid = s.callback::pg_catalog.oid
 ORDER BY c.event_id
 LIMIT $1
