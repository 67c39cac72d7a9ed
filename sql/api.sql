-- pg_webhook: the public SQL API. Thin PL/pgSQL wrappers give each function its documented
-- signature, defaults and comment; the work is done by the Rust functions _subscribe and
-- _unsubscribe, which validate every argument and check the caller's privileges.

-- API: Public.
CREATE FUNCTION webhook.subscribe(
    name           text,                  -- unique among live subscriptions
    target         regclass,              -- the table to watch
    url            text,                  -- http:// or https:// endpoint
    events         text[]     DEFAULT ARRAY['insert', 'update', 'delete'],
    secret         text       DEFAULT NULL,  -- whsec_...; NULL generates one
    headers        jsonb      DEFAULT '{}',  -- extra static request headers
    timeout        interval   DEFAULT NULL,  -- NULL: pg_webhook.default_timeout
    max_attempts   integer    DEFAULT NULL,  -- NULL: 8, or one more than retry_schedule's length
    retry_schedule interval[] DEFAULT NULL,  -- delays before attempts 2, 3, ...; NULL: default
    format         text       DEFAULT 'database',  -- database, standard or cloudevents
    filter         text       DEFAULT NULL,  -- condition over NEW / OLD, as in a WHEN clause
    columns        text[]     DEFAULT NULL,  -- send only these columns
    exclude_columns text[]    DEFAULT NULL,  -- or every column but these
    skip_unchanged boolean    DEFAULT false, -- no UPDATE event when only unsent columns changed
    ordered        boolean    DEFAULT false, -- one at a time, in commit order
    max_in_flight  integer    DEFAULT NULL,  -- concurrent requests; NULL: the worker's limit
    rate_limit     double precision DEFAULT NULL,  -- events per second; NULL: no limit
    callback       regprocedure DEFAULT NULL, -- f(jsonb), run after each success and each death
    batch_size     integer    DEFAULT 1,     -- events per request (1 to 1000)
    batch_wait     interval   DEFAULT '0',   -- how long a partial batch waits to fill (to 1 min)
    order_key      text[]     DEFAULT NULL,  -- columns: equal values in commit order, others in parallel
    group_by       text       DEFAULT NULL,  -- 'transaction': one request per committed transaction
    payload        text       DEFAULT NULL,  -- jsonb expression over NEW / OLD, sent as the record
    client_cert    text       DEFAULT NULL,  -- PEM: TLS client certificate (then intermediates)
    client_key     text       DEFAULT NULL,  -- PEM: its private key (unencrypted)
    auth           jsonb      DEFAULT NULL   -- {"type": "oauth2", "token_url", "client_id", "client_secret", "scope"}
) RETURNS webhook.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id integer;
    created webhook.subscriptions;
BEGIN
    new_id := webhook._subscribe(
        name, target::oid, url, events, secret, headers,
        -- Clamped so an absurd interval reaches the range check instead of failing the cast.
        (CASE WHEN timeout IS NOT NULL
              THEN LEAST(GREATEST(extract(epoch FROM timeout) * 1000, -1e15), 1e15) END)::bigint,
        max_attempts,
        CASE WHEN retry_schedule IS NOT NULL THEN
            COALESCE((SELECT array_agg((CASE WHEN d IS NOT NULL
                                            THEN LEAST(GREATEST(extract(epoch FROM d) * 1000, -1e15), 1e15)
                                       END)::bigint ORDER BY o)
                        FROM unnest(retry_schedule) WITH ORDINALITY AS u(d, o)), '{}')
        END,
        format, filter, columns, exclude_columns, skip_unchanged,
        ordered, max_in_flight, rate_limit, callback::oid,
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'batch_size', batch_size, 'order_key', order_key, 'group_by', group_by,
            'payload', payload,
            'client_cert', client_cert, 'client_key', client_key, 'auth', auth,
            'batch_wait_ms', (CASE WHEN batch_wait IS NOT NULL
                                   THEN LEAST(GREATEST(extract(epoch FROM batch_wait) * 1000, -1e15), 1e15) END)::bigint)));
    SELECT s.* INTO created FROM webhook.subscriptions s WHERE s.id = new_id;
    RETURN created;
END
$$;

COMMENT ON FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure, integer, interval, text[], text, text, text, text, jsonb) IS
$$Send every committed INSERT, UPDATE and/or DELETE on a table to an HTTP endpoint as a signed JSON POST.
Returns the new subscription, including its secret (generated when NULL).
Example: SELECT * FROM webhook.subscribe('orders_to_billing', 'orders', 'https://billing.example.com/hooks');
Default retry schedule after a failure: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (±20 % jitter), 8 attempts.
format: database (default; Supabase-compatible), standard (Standard Webhooks envelope) or cloudevents (CloudEvents 1.0 JSON).
filter: a condition over NEW and OLD; columns / exclude_columns choose what is sent; skip_unchanged drops UPDATEs of unsent columns only.
ordered: deliver one event at a time in commit order (writers of the table then commit one at a time); max_in_flight / rate_limit: this subscription's own limits.
callback: a function f(event jsonb) run as the owner after each event is delivered or dies, with the outcome.
batch_size / batch_wait: up to batch_size events per request ({"events": [{"webhook_id", "payload"}, ...]}), a partial batch of new events waiting up to batch_wait for more.
order_key: columns whose equal values are delivered one at a time in commit order, different values in parallel; writers wait only for writers of the same key.
group_by => 'transaction': one request per committed transaction, all its events in statement order, in numbered parts when it is over pg_webhook.max_payload_bytes.
payload: a jsonb expression over NEW and OLD (e.g. jsonb_build_object('order', NEW.id)) sent as the event's record instead of the row; evaluated in the writer's transaction as the owner, and an error in it fails the write.
client_cert / client_key: a TLS client certificate (PEM) and its key, for receivers that demand mTLS; webhook.set_client_certificate() changes them.
auth => '{"type": "oauth2", "token_url": ..., "client_id": ..., "client_secret": ..., "scope": ...}': the worker fetches an OAuth 2.0 client credentials token and sends it as Authorization: Bearer; webhook.set_auth() changes it.$$;

-- API: Public.
CREATE FUNCTION webhook.unsubscribe(
    name           text,
    discard_queued boolean DEFAULT false,  -- true: drop events not yet delivered
    if_exists      boolean DEFAULT false   -- true: return false instead of raising an error
) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._unsubscribe(name, discard_queued, if_exists) $$;

COMMENT ON FUNCTION webhook.unsubscribe(text, boolean, boolean) IS
$$Stop sending changes for a subscription: its trigger is dropped at once. Events already queued are still delivered unless discard_queued => true.
Raises an error for an unknown name unless if_exists => true (then returns false). Returns true when unsubscribed.$$;

-- API: Public.
CREATE FUNCTION webhook.pause(name text) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_paused(name, true) $$;
COMMENT ON FUNCTION webhook.pause(text) IS
$$Stop sending a subscription's events; changes keep being captured and queue up (status 'parked').
Returns false if it was already paused (or disabled). webhook.resume() sends the backlog.$$;

-- API: Public.
CREATE FUNCTION webhook.resume(name text) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_paused(name, false) $$;
COMMENT ON FUNCTION webhook.resume(text) IS
$$Resume a paused or auto-disabled subscription: its parked events are delivered, oldest first. Returns false if it was already active.$$;

-- API: Public.
CREATE FUNCTION webhook.replay(event_id bigint) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._replay_event(event_id) $$;
COMMENT ON FUNCTION webhook.replay(bigint) IS
$$Redeliver one finished (delivered or dead) event as a new attempt series, with the same webhook-id.$$;

-- API: Public.
CREATE FUNCTION webhook.replay_dead(name text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._replay_dead(name) $$;
COMMENT ON FUNCTION webhook.replay_dead(text) IS
$$Redeliver every dead event of a subscription (same webhook-ids, a fresh retry schedule). Returns how many.$$;

-- API: Public.
CREATE FUNCTION webhook.replay_since(name text, since timestamptz) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._replay_since(name, since) $$;
COMMENT ON FUNCTION webhook.replay_since(text, timestamptz) IS
$$Redeliver every finished event of a subscription captured since a time (kept for pg_webhook.retention). Returns how many.$$;

-- API: Public.
CREATE FUNCTION webhook.rotate_secret(
    name    text,
    secret  text     DEFAULT NULL,          -- whsec_...; NULL generates one
    overlap interval DEFAULT '24 hours'     -- how long the old secret also signs
) RETURNS text
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._rotate_secret(name, secret,
              (CASE WHEN overlap IS NOT NULL
                    THEN LEAST(GREATEST(extract(epoch FROM overlap) * 1000, -1e15), 1e15) END)::bigint) $$;
COMMENT ON FUNCTION webhook.rotate_secret(text, text, interval) IS
$$Replace a subscription's signing secret and return the new one. During the overlap every request carries two signatures (new, then old), so receivers can switch keys at their pace.$$;

-- API: Public.
CREATE FUNCTION webhook.ping(name text)
RETURNS TABLE (delivered boolean, status_code integer, duration_ms double precision,
               error text, response_excerpt text, webhook_id text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM webhook._ping(name) $$;
COMMENT ON FUNCTION webhook.ping(text) IS
$$Send a signed test event (type PING, no rows, in the subscription's format) to its endpoint now and return the outcome.
Works on paused and disabled subscriptions too; nothing is queued or recorded.$$;

-- API: Public.
CREATE FUNCTION webhook.set_client_certificate(
    name        text,
    client_cert text,   -- PEM: the client's certificate, then any intermediates; NULL: none
    client_key  text    -- PEM: its private key (unencrypted); NULL with client_cert NULL
) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_client_certificate(name, client_cert, client_key) $$;
COMMENT ON FUNCTION webhook.set_client_certificate(text, text, text) IS
$$Replace (or with two NULLs remove) the TLS client certificate and key a subscription presents to a receiver that demands mTLS.
Checked like subscribe()'s: both PEM, and the key must be the certificate's. The next request uses them. Returns true.$$;

-- API: Public.
CREATE FUNCTION webhook.set_owner(name text, new_owner regrole) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_owner(name, new_owner::pg_catalog.oid) $$;
COMMENT ON FUNCTION webhook.set_owner(text, regrole) IS
$$Hand a subscription whose owner's role was dropped to another role (superusers only): its filter, payload and callback then run as that role, and the worker checks that role's access to the table; webhook.resume() then sends the parked events.
The new owner must pass every check subscribe() makes of a subscriber and own the callback (or a superuser must). A subscription whose owner still exists, or that has SQL of its former owner's (a filter or payload), does not change hands: the new owner subscribes again. Returns true.$$;

-- API: Public.
CREATE FUNCTION webhook.set_auth(name text, auth jsonb) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_auth(name, auth) $$;
COMMENT ON FUNCTION webhook.set_auth(text, jsonb) IS
$$Replace (or with NULL remove) a subscription's OAuth 2.0 client credentials, {"type": "oauth2", "token_url", "client_id", "client_secret", "scope"}.
Checked like subscribe()'s. The cached token is dropped: the next request fetches one with the new credentials. Returns true.$$;

-- API: Private.
COMMENT ON FUNCTION webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb) IS
    'Internal: validates and creates a subscription for webhook.subscribe(). Call webhook.subscribe() instead.';
COMMENT ON FUNCTION webhook._unsubscribe(text, boolean, boolean) IS
    'Internal: implements webhook.unsubscribe(). Call webhook.unsubscribe() instead.';
COMMENT ON FUNCTION webhook._set_paused(text, boolean) IS 'Internal: implements webhook.pause() and webhook.resume().';
COMMENT ON FUNCTION webhook._ping(text) IS 'Internal: implements webhook.ping().';
COMMENT ON FUNCTION webhook._replay_event(bigint) IS 'Internal: implements webhook.replay().';
COMMENT ON FUNCTION webhook._replay_dead(text) IS 'Internal: implements webhook.replay_dead().';
COMMENT ON FUNCTION webhook._replay_since(text, timestamptz) IS 'Internal: implements webhook.replay_since().';
COMMENT ON FUNCTION webhook._rotate_secret(text, text, bigint) IS 'Internal: implements webhook.rotate_secret().';
COMMENT ON FUNCTION webhook._set_client_certificate(text, text, text) IS 'Internal: implements webhook.set_client_certificate().';
COMMENT ON FUNCTION webhook._set_auth(text, jsonb) IS 'Internal: implements webhook.set_auth().';
COMMENT ON FUNCTION webhook._set_owner(text, oid) IS 'Internal: implements webhook.set_owner().';
COMMENT ON FUNCTION webhook._capture() IS
    'Internal: the statement trigger (with transition tables) webhook.subscribe() puts on a watched table; it queues one event per changed row in the writer''s transaction.';

-- API: Public. Health at a glance, one row per visible subscription. One pass over the (small)
-- queue and index range scans over the last hour of history: cheap enough to poll every few
-- seconds. Latency is from the writing transaction's start to the end of the successful
-- request.
CREATE VIEW webhook.subscription_stats WITH (security_barrier) AS
WITH queued AS (
    SELECT q.subscription_id,
           count(*) FILTER (WHERE q.next_attempt_at IS DISTINCT FROM 'infinity') AS queued,
           count(*) FILTER (WHERE q.next_attempt_at = 'infinity') AS parked,
           count(*) FILTER (WHERE q.attempts > 0) AS retrying,
           now() - min(q.created_at) AS oldest_queued_age
      FROM webhook._event_queue q
     GROUP BY q.subscription_id
), finished AS (
    SELECT a.subscription_id,
           count(*) FILTER (WHERE a.status = 'delivered') AS delivered_last_hour,
           count(*) FILTER (WHERE a.status = 'dead') AS dead_last_hour,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM a.final_started_at - a.created_at) * 1000 + a.final_duration_ms)
               FILTER (WHERE a.status = 'delivered') AS latency_p50_ms,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY
               extract(epoch FROM a.final_started_at - a.created_at) * 1000 + a.final_duration_ms)
               FILTER (WHERE a.status = 'delivered') AS latency_p99_ms
      FROM webhook._event_archive a
     WHERE a.finished_at > now() - interval '1 hour'
     GROUP BY a.subscription_id
), failed AS (
    SELECT t.subscription_id, count(*) AS failed_attempts_last_hour,
           (array_agg(COALESCE(t.error, 'HTTP ' || t.status_code) ORDER BY t.started_at DESC))[1] AS last_error,
           (array_agg(COALESCE('HTTP ' || t.status_code, 'no answer') ORDER BY t.started_at DESC))[1]
               AS last_status
      FROM webhook._attempts t
     WHERE t.started_at > now() - interval '1 hour' AND t.outcome <> 'delivered'
     GROUP BY t.subscription_id
), totals AS (
    SELECT t.subscription_id, sum(t.delivered) AS delivered, sum(t.dead) AS dead,
           sum(t.failed_attempts) AS failed_attempts
      FROM webhook._delivery_totals t
     GROUP BY t.subscription_id
)
SELECT s.id, s.name, s.status,
       CASE WHEN s.status = 'active'
                   AND NOT EXISTS (SELECT FROM webhook._triggers_made m
                                    WHERE m.subscription_id = s.id)
            -- Restored (webhook._triggers_made is not dumped), its triggers not seen complete.
            THEN 'restored: its capture triggers are not confirmed yet, and a table without them captures nothing; the delivery worker looks at them every 10 s and logs what is missing'
       WHEN s.status = 'active' AND o.trigger_name IS NOT NULL
            THEN pg_catalog.format('its capture trigger %s is disabled: changes to that table are not captured while it is (ALTER TABLE ... ENABLE TRIGGER turns it on again)', o.trigger_name)
       -- Why it was disabled for failing, without the error (the answer's status since 0.3.0,
       -- but 0.2.0 quoted the error itself), to those who do not manage it.
       WHEN NOT COALESCE(v.manages, false)
                AND s.status_reason LIKE 'endpoint failing since %; last error: %'
            THEN pg_catalog.split_part(s.status_reason, '; last error: ', 1)
            ELSE s.status_reason END AS status_reason,
       s.failing_since,
       COALESCE(q.queued, 0) AS queued,
       COALESCE(f.in_flight, 0)::bigint AS in_flight,
       COALESCE(q.parked, 0) AS parked,
       COALESCE(q.retrying, 0) AS retrying,
       q.oldest_queued_age,
       COALESCE(d.delivered_last_hour, 0) AS delivered_last_hour,
       COALESCE(x.failed_attempts_last_hour, 0) + COALESCE(d.dead_last_hour, 0) AS failed_last_hour,
       round(d.latency_p50_ms::numeric, 1) AS latency_p50_ms,
       round(d.latency_p99_ms::numeric, 1) AS latency_p99_ms,
       -- (An error may quote the endpoint's or a token endpoint's answer: see webhook.attempts.
       -- Monitoring roles see what it was: the status answered, or none.)
       CASE WHEN v.manages THEN x.last_error
            WHEN pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN x.last_status END
           AS last_error,
       COALESCE(t.delivered, 0)::bigint AS delivered_total,
       COALESCE(t.dead, 0)::bigint AS dead_total,
       COALESCE(t.failed_attempts, 0)::bigint AS failed_attempts_total
  -- The subscriptions the reader sees, chosen behind a fence (OFFSET 0) no condition of the
  -- reader's passes: one pushed down to the private table's scan (name = '...'), below the
  -- choice, made EXPLAIN ANALYZE's row counts answer guesses at subscriptions hidden from them.
  FROM (SELECT s0.id, s0.name, s0.status, s0.status_reason, s0.failing_since
          FROM webhook._subscriptions s0
          LEFT JOIN webhook._visible_subscriptions v0 ON v0.id = s0.id
         WHERE v0.id IS NOT NULL
            -- Monitoring roles (postgres_exporter) see every subscription's health, not its
            -- events.
            OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
        OFFSET 0) s
  LEFT JOIN queued q ON q.subscription_id = s.id
  LEFT JOIN finished d ON d.subscription_id = s.id
  LEFT JOIN failed x ON x.subscription_id = s.id
  LEFT JOIN totals t ON t.subscription_id = s.id
  LEFT JOIN webhook._in_flight() f ON f.subscription_id = s.id
  LEFT JOIN webhook._visible_subscriptions v ON v.id = s.id
  LEFT JOIN webhook._capture_off o ON o.subscription_id = s.id;
COMMENT ON VIEW webhook.subscription_stats IS
    'Per subscription: queued, in flight, parked (paused/disabled), retrying, oldest queued age, delivered and failed in the last hour, latency p50/p99 (ms, from the writing transaction to the 2xx), last error, status, and running totals of delivered events, dead events and failed attempts (counters for monitoring).';
GRANT SELECT ON webhook.subscription_stats TO webhook_admin;
GRANT USAGE ON SCHEMA webhook TO pg_monitor;
GRANT SELECT ON webhook.subscription_stats TO pg_monitor;
-- The exporter's query lists each delivery worker by it, to report whether it runs.
GRANT EXECUTE ON FUNCTION webhook._worker_count() TO pg_monitor;
COMMENT ON FUNCTION webhook._worker_count() IS 'Internal: how many delivery workers each database has (pg_webhook.workers, or the count its default resolved to from the CPUs), for monitoring.';
-- The exporter's query reports stuck callback runners with it.
GRANT EXECUTE ON FUNCTION webhook._stuck_runners() TO pg_monitor;
COMMENT ON FUNCTION webhook._stuck_runners() IS 'Internal: how many callback runners of this database are stuck in a call the watchdog cannot end (shared memory), for monitoring.';
COMMENT ON FUNCTION webhook._in_flight() IS 'Internal: requests the delivery workers have in flight (shared memory), per subscription the caller sees in webhook.subscription_stats.';

-- API: Private. A dropped table or capture trigger: the subscriptions it served are marked
-- unsubscribed with the reason (objects matched by OID: a trigger of the same name on another
-- table means nothing), and their queued events — parked ones too — are still delivered.
CREATE FUNCTION webhook._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables oid[];
    what text[];
    trigger_tables oid[];
BEGIN
    -- DROP EXTENSION removes our own tables before this runs.
    IF pg_catalog.to_regclass('webhook._subscriptions') IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.array_agg(d.objid ORDER BY d.objid),
           pg_catalog.array_agg(d.object_type || ' ' || d.object_identity ORDER BY d.objid)
      INTO tables, what
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0;
    -- The tables dropped triggers were on (those still there): only subscriptions over them
    -- are checked for a missing trigger.
    SELECT pg_catalog.array_agg(DISTINCT t.relid)
      INTO trigger_tables
      FROM pg_catalog.pg_event_trigger_dropped_objects() d,
           LATERAL (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(d.address_names[1])
                        || '.' || pg_catalog.quote_ident(d.address_names[2]))::pg_catalog.oid
                        AS relid) t
     WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND t.relid IS NOT NULL;
    PERFORM webhook._on_dropped(COALESCE(tables, '{}'), COALESCE(what, '{}'),
                                COALESCE(trigger_tables, '{}'));
END
$$;
COMMENT ON FUNCTION webhook._on_sql_drop() IS
    'Internal: event trigger that marks subscriptions whose table or capture trigger was dropped.';
CREATE EVENT TRIGGER webhook_on_sql_drop ON sql_drop EXECUTE FUNCTION webhook._on_sql_drop();
-- Also under session_replication_role = replica (logical replication apply, some restores).
ALTER EVENT TRIGGER webhook_on_sql_drop ENABLE ALWAYS;

-- API: Private. A created, attached or detached partition (or inheritance child): the
-- subscriptions of the tables above it get their triggers on it, or lose them. pg_partman and
-- any CREATE TABLE ... PARTITION OF are covered this way. Order keys follow a renamed column,
-- and a key column is neither retyped nor added back while its subscription has events queued
-- (src/triggers/key_columns.rs). In C, because it must see the statement: any other ALTER
-- TABLE is left alone (see src/triggers/events.rs).
CREATE FUNCTION webhook._on_ddl() RETURNS event_trigger
LANGUAGE c
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pg_webhook_on_ddl';
COMMENT ON FUNCTION webhook._on_ddl() IS
    'Internal: event trigger that puts subscriptions'' capture triggers on new and attached partitions, and takes them off detached ones.';
CREATE EVENT TRIGGER webhook_on_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA', 'CREATE FOREIGN TABLE',
                 'ALTER FOREIGN TABLE', 'ALTER TYPE', 'CREATE TRIGGER')
    EXECUTE FUNCTION webhook._on_ddl();
ALTER EVENT TRIGGER webhook_on_ddl ENABLE ALWAYS;

-- API: Private. A claim's byte budget, counted as its rows are read (src/queue/room.rs). Only
-- the delivery workers call it, as the bootstrap superuser.
CREATE FUNCTION webhook._claim_room(bytes integer, budget bigint) RETURNS integer
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pg_webhook_claim_room';
COMMENT ON FUNCTION webhook._claim_room(integer, bigint) IS
    'Internal: what a delivery worker''s claim makes of a row, by the bytes read before it (0 taken, 1 first past the budget, 2 left out).';

COMMENT ON FUNCTION webhook._order_lock() IS
    'Internal: the BEFORE statement trigger of an ordered subscription; takes its order lock before the statement locks any row.';
COMMENT ON FUNCTION webhook._on_dropped(oid[], text[], oid[]) IS
    'Internal: called by the webhook_on_sql_drop event trigger with the tables a command dropped, and the tables it dropped triggers of.';
COMMENT ON FUNCTION webhook._sync_all_triggers() IS
    'Internal: brings every subscription''s triggers in line with what its row asks for (used by upgrades).';

-- Trigger and event-trigger machinery runs as the extension's owner; nobody calls it directly.
-- CREATE TRIGGER checks EXECUTE on the trigger function, so only pg_webhook itself can attach
-- a capture trigger to a table.
REVOKE ALL ON FUNCTION
    webhook._capture(), webhook._order_lock(),
    webhook._on_sql_drop(), webhook._on_ddl(),
    webhook._on_dropped(oid[], text[], oid[]),
    webhook._sync_all_triggers(), webhook._in_flight(),
    webhook._claim_room(integer, bigint), webhook._worker_count(),
    webhook._stuck_runners()
FROM PUBLIC;
-- The stats view reads it as the querying role.
GRANT EXECUTE ON FUNCTION webhook._in_flight() TO webhook_admin;
-- subscription_stats calls it as the querying role, and monitoring roles read that view.
GRANT EXECUTE ON FUNCTION webhook._in_flight() TO pg_monitor;

-- Nobody reads or writes the private tables directly; the views and functions are the API.
REVOKE ALL ON webhook._subscriptions, webhook._event_queue, webhook._event_archive,
              webhook._attempts, webhook._callback_queue, webhook._delivery_totals,
              webhook._triggers_made, webhook._batches_out FROM PUBLIC;

-- Subscribing and unsubscribing are for superusers and webhook_admin members; the functions
-- also check that the caller may read the table (and owns the subscription, to remove it).
REVOKE ALL ON FUNCTION
    webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure, integer, interval, text[], text, text, text, text, jsonb),
    webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb),
    webhook.unsubscribe(text, boolean, boolean),
    webhook._unsubscribe(text, boolean, boolean),
    webhook.pause(text), webhook.resume(text), webhook._set_paused(text, boolean),
    webhook.replay(bigint), webhook._replay_event(bigint),
    webhook.replay_dead(text), webhook._replay_dead(text),
    webhook.replay_since(text, timestamptz), webhook._replay_since(text, timestamptz),
    webhook.rotate_secret(text, text, interval), webhook._rotate_secret(text, text, bigint),
    webhook.ping(text), webhook._ping(text),
    webhook.set_client_certificate(text, text, text), webhook._set_client_certificate(text, text, text),
    webhook.set_auth(text, jsonb), webhook._set_auth(text, jsonb),
    webhook.set_owner(text, regrole), webhook._set_owner(text, oid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure, integer, interval, text[], text, text, text, text, jsonb),
    webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb),
    webhook.unsubscribe(text, boolean, boolean),
    webhook._unsubscribe(text, boolean, boolean),
    webhook.pause(text), webhook.resume(text), webhook._set_paused(text, boolean),
    webhook.replay(bigint), webhook._replay_event(bigint),
    webhook.replay_dead(text), webhook._replay_dead(text),
    webhook.replay_since(text, timestamptz), webhook._replay_since(text, timestamptz),
    webhook.rotate_secret(text, text, interval), webhook._rotate_secret(text, text, bigint),
    webhook.ping(text), webhook._ping(text),
    webhook.set_client_certificate(text, text, text), webhook._set_client_certificate(text, text, text),
    webhook.set_auth(text, jsonb), webhook._set_auth(text, jsonb),
    webhook.set_owner(text, regrole), webhook._set_owner(text, oid)
TO webhook_admin;

-- Every column of every view says what it holds (\d+ webhook.<view>); a test checks none is
-- missing.
COMMENT ON COLUMN webhook.subscriptions.id IS 'Subscription id; appears in trigger names (pg_webhook_<id>_insert) and in webhook.events.subscription_id.';
COMMENT ON COLUMN webhook.subscriptions.name IS 'Unique among live subscriptions; what the SQL API takes.';
COMMENT ON COLUMN webhook.subscriptions.target IS 'The watched table (with all its partitions).';
COMMENT ON COLUMN webhook.subscriptions.events IS 'Event kinds sent: insert, update, delete, truncate.';
COMMENT ON COLUMN webhook.subscriptions.headers IS 'Static request headers (owner and superusers only).';
COMMENT ON COLUMN webhook.subscriptions.timeout IS 'Per-request timeout; NULL: pg_webhook.default_timeout.';
COMMENT ON COLUMN webhook.subscriptions.max_attempts IS 'Attempts before an event is dead, the first included.';
COMMENT ON COLUMN webhook.subscriptions.retry_schedule IS 'Delays before attempts 2, 3, ... (the last repeats); NULL: the default schedule.';
COMMENT ON COLUMN webhook.subscriptions.format IS 'Body format: database, standard or cloudevents.';
COMMENT ON COLUMN webhook.subscriptions.filter IS 'Condition over NEW / OLD a row must meet to be sent; NULL: every row.';
COMMENT ON COLUMN webhook.subscriptions.columns IS 'Only these columns are sent; NULL: all.';
COMMENT ON COLUMN webhook.subscriptions.exclude_columns IS 'These columns are not sent; NULL: none excluded.';
COMMENT ON COLUMN webhook.subscriptions.skip_unchanged IS 'No UPDATE event when only columns that are not sent changed.';
COMMENT ON COLUMN webhook.subscriptions.status IS 'active, paused, disabled (automatically, see status_reason) or unsubscribed (queued events still delivered).';
COMMENT ON COLUMN webhook.subscriptions.status_reason IS 'Why the status is what it is: who paused or unsubscribed it, why it was disabled.';
COMMENT ON COLUMN webhook.subscriptions.owner IS 'The role that created it: filters and callbacks run as it, and only it (or a superuser) manages it.';
COMMENT ON COLUMN webhook.subscriptions.created_at IS 'When it was created.';
COMMENT ON COLUMN webhook.subscriptions.previous_secret IS 'The secret being rotated out, which still signs until previous_secret_expires_at (owner and superusers only).';
COMMENT ON COLUMN webhook.subscriptions.previous_secret_expires_at IS 'When the previous secret stops signing.';
COMMENT ON COLUMN webhook.subscriptions.failing_since IS 'Since when every attempt has failed (NULL after a success); drives pg_webhook.disable_after.';
COMMENT ON COLUMN webhook.subscriptions.ordered IS 'Events are delivered one at a time, in commit order.';
COMMENT ON COLUMN webhook.subscriptions.max_in_flight IS 'Most concurrent requests of this subscription; NULL: only the worker''s limit.';
COMMENT ON COLUMN webhook.subscriptions.rate_limit IS 'Most events per second; NULL: no limit.';
COMMENT ON COLUMN webhook.subscriptions.callback IS 'Signature (schema.name(pg_catalog.jsonb)) of the function f(event jsonb) run as the owner after each event is delivered or dies.';
COMMENT ON COLUMN webhook.subscriptions.batch_size IS 'Events per request: 1 sends each event alone in its plain body; more sends {"events": [...]} batches.';
COMMENT ON COLUMN webhook.subscriptions.batch_wait IS 'How long a partial batch of new events waits for more before it is sent.';
COMMENT ON COLUMN webhook.subscriptions.group_by IS 'transaction: one request per committed transaction, all its events in statement order (in numbered parts when over pg_webhook.max_payload_bytes). NULL: events are sent on their own or in batches.';
COMMENT ON COLUMN webhook.subscriptions.order_key IS 'Columns whose values order events: events with equal values are delivered one at a time in commit order, others in parallel. NULL: no per-key order.';
COMMENT ON COLUMN webhook.subscriptions.payload IS 'An expression over NEW and OLD whose jsonb value is sent as the event''s record (old_record is then null), evaluated at capture as the owner. NULL: the row images are sent.';
COMMENT ON COLUMN webhook.subscriptions.client_cert IS 'TLS client certificate chain (PEM) presented to the receiver; NULL: none (owner and superusers only).';
COMMENT ON COLUMN webhook.subscriptions.client_key IS 'Private key of client_cert (PEM) (owner and superusers only).';
COMMENT ON COLUMN webhook.subscriptions.auth IS 'OAuth 2.0 client credentials: {"type": "oauth2", "token_url", "client_id", "client_secret", "scope"}; others than the owner and superusers see only the type. NULL: none.';
COMMENT ON COLUMN webhook.events.id IS 'Event id; the webhook-id is msg_<subscription uid>_<id>, and msg_<subscription uid>_<id>.<timeline> when timeline is not 1.';
COMMENT ON COLUMN webhook.events.timeline IS 'The WAL timeline the change was captured on: 1 until a failover or a point-in-time recovery starts another.';
COMMENT ON COLUMN webhook.events.subscription_id IS 'The subscription (webhook.subscriptions.id).';
COMMENT ON COLUMN webhook.events.op IS 'INSERT, UPDATE, DELETE or TRUNCATE.';
COMMENT ON COLUMN webhook.events.table_schema IS 'Schema of the subscribed table (not of the partition written).';
COMMENT ON COLUMN webhook.events.table_name IS 'Name of the subscribed table (not of the partition written).';
COMMENT ON COLUMN webhook.events.record IS 'The new row (INSERT, UPDATE) as sent; NULL for DELETE and TRUNCATE, and for a reader who may not read the table whole now (SELECT or schema USAGE revoked, row-level security applying).';
COMMENT ON COLUMN webhook.events.old_record IS 'The old row (UPDATE, DELETE) as sent; NULL for INSERT and TRUNCATE, and for a reader who may not read the table whole now.';
COMMENT ON COLUMN webhook.events.status IS 'pending (queued for a first or further attempt), parked (its subscription is paused, disabled or may not read its table), delivered, or dead.';
COMMENT ON COLUMN webhook.events.attempts IS 'Attempts made so far.';
COMMENT ON COLUMN webhook.events.last_error IS 'Summary of the latest failed attempt; NULL for a reader who does not manage the subscription (it may quote the endpoint''s answer).';
COMMENT ON COLUMN webhook.events.created_at IS 'When the change was captured (its transaction''s start).';
COMMENT ON COLUMN webhook.events.finished_at IS 'When it was delivered or died; NULL while pending.';
COMMENT ON COLUMN webhook.events.callback_error IS 'Why the subscription''s callback failed for this event; NULL if it ran or there is none, and for a reader who does not manage the subscription (the callback runs as its owner, and its error may quote what it read).';
COMMENT ON COLUMN webhook.attempts.event_id IS 'The event (webhook.events.id).';
COMMENT ON COLUMN webhook.attempts.attempt IS 'Attempt number, from 1; replays continue the count.';
COMMENT ON COLUMN webhook.attempts.subscription_id IS 'The subscription (webhook.subscriptions.id).';
COMMENT ON COLUMN webhook.attempts.started_at IS 'When the request was started.';
COMMENT ON COLUMN webhook.attempts.duration_ms IS 'How long until the answer (or the failure), in milliseconds.';
COMMENT ON COLUMN webhook.attempts.status_code IS 'The HTTP status answered; NULL when there was no answer.';
COMMENT ON COLUMN webhook.attempts.response_excerpt IS 'The first pg_webhook.response_excerpt_bytes of the response body; NULL for a reader who does not manage the subscription (an answer to a request made with its credentials may quote what they reach).';
COMMENT ON COLUMN webhook.attempts.error IS 'Transport failure (connect, DNS, TLS, timeout, refused destination) or why no OAuth 2.0 token could be had; NULL when answered (noted with the status when the body broke off, or when a 401 got no new token), and for a reader who does not manage the subscription.';
COMMENT ON COLUMN webhook.subscription_stats.id IS 'Subscription id.';
COMMENT ON COLUMN webhook.subscription_stats.name IS 'Subscription name.';
COMMENT ON COLUMN webhook.subscription_stats.status IS 'active, paused, disabled or unsubscribed.';
COMMENT ON COLUMN webhook.subscription_stats.status_reason IS 'Why the status is what it is.';
COMMENT ON COLUMN webhook.subscription_stats.failing_since IS 'Since when every attempt has failed; NULL after a success.';
COMMENT ON COLUMN webhook.subscription_stats.queued IS 'Events waiting for a first or further attempt (parked ones not counted).';
COMMENT ON COLUMN webhook.subscription_stats.in_flight IS 'Requests in flight right now.';
COMMENT ON COLUMN webhook.subscription_stats.parked IS 'Events held while the subscription is paused, disabled or may not read its table.';
COMMENT ON COLUMN webhook.subscription_stats.retrying IS 'Queued events that have failed at least once.';
COMMENT ON COLUMN webhook.subscription_stats.oldest_queued_age IS 'Age of the oldest queued event; NULL when none is queued.';
COMMENT ON COLUMN webhook.subscription_stats.delivered_last_hour IS 'Events delivered in the last hour.';
COMMENT ON COLUMN webhook.subscription_stats.failed_last_hour IS 'Failed attempts and dead events in the last hour.';
COMMENT ON COLUMN webhook.subscription_stats.latency_p50_ms IS 'Median time from the writing transaction''s start to the successful answer, last hour, ms.';
COMMENT ON COLUMN webhook.subscription_stats.latency_p99_ms IS '99th percentile of the same, ms.';
COMMENT ON COLUMN webhook.subscription_stats.last_error IS 'The latest failed attempt''s error, last hour; only the status answered (or no answer) for a member of pg_monitor who does not manage the subscription, NULL for other readers.';
COMMENT ON COLUMN webhook.subscription_stats.delivered_total IS 'Events delivered since the subscription was created (a counter: never decreases, not purged by retention; for one created before 0.3.0, counted from the history kept at the update).';
COMMENT ON COLUMN webhook.subscription_stats.dead_total IS 'Events that died (every attempt failed, or refused as unsendable) since the subscription was created (a counter).';
COMMENT ON COLUMN webhook.subscription_stats.failed_attempts_total IS 'Attempts that did not deliver (retried ones and dead events'' last ones) since the subscription was created (a counter).';
COMMENT ON COLUMN webhook._visible_subscriptions.id IS 'A subscription the current user may see: as a superuser, its owner, or one who may read the table whole, if no payload or filter of the owner''s (its own or a backfill''s) made or chose its events.';
COMMENT ON COLUMN webhook._visible_subscriptions.manages IS 'The current user owns it (or is a superuser), so may see its secret, headers and URL, and the errors of its callback and backfills.';
COMMENT ON COLUMN webhook._visible_subscriptions.reads_rows IS 'The current user may see the rows its events carry: a superuser, or one who may read the table whole now (or the table is gone).';
COMMENT ON COLUMN webhook._owner_access.id IS 'Subscription id.';
COMMENT ON COLUMN webhook._owner_access.denied IS 'Why its owner may no longer read its whole table; NULL: it may.';

-- API: Public.
CREATE FUNCTION webhook.backfill(name text, filter text DEFAULT NULL)
RETURNS SETOF webhook.backfills
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started bigint := webhook._backfill(name, filter);
BEGIN
    RETURN QUERY SELECT b.* FROM webhook.backfills b WHERE b.id = started;
END
$$;
COMMENT ON FUNCTION webhook.backfill(text, text) IS
$$Send the rows the subscription's table already has, as BACKFILL events (record = the row), in the background, in primary key order; the subscription's filter and columns apply, and filter (a condition over the table's columns) narrows it further.
Progress in webhook.backfills; webhook.cancel_backfill() stops it. One at a time per subscription; the table needs a primary key.$$;

-- API: Public.
CREATE FUNCTION webhook.cancel_backfill(name text) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._cancel_backfill(name) $$;
COMMENT ON FUNCTION webhook.cancel_backfill(text) IS
$$Stop the subscription's running backfill: no chunk starts after this commits; events already queued are still delivered. Returns false when none was running.$$;
COMMENT ON FUNCTION webhook._backfill(text, text) IS 'Internal: implements webhook.backfill().';
COMMENT ON FUNCTION webhook._cancel_backfill(text) IS 'Internal: implements webhook.cancel_backfill().';
REVOKE ALL ON webhook._backfills, webhook._backfill_rounds FROM PUBLIC;
REVOKE ALL ON FUNCTION
    webhook.backfill(text, text), webhook._backfill(text, text),
    webhook.cancel_backfill(text), webhook._cancel_backfill(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    webhook.backfill(text, text), webhook._backfill(text, text),
    webhook.cancel_backfill(text), webhook._cancel_backfill(text)
TO webhook_admin;
COMMENT ON COLUMN webhook.backfills.id IS 'Backfill id.';
COMMENT ON COLUMN webhook.backfills.subscription IS 'The subscription''s name.';
COMMENT ON COLUMN webhook.backfills.subscription_id IS 'The subscription''s id.';
COMMENT ON COLUMN webhook.backfills.state IS 'running, done (every row read), canceled (webhook.cancel_backfill(), or the subscription ended) or failed (see last_error).';
COMMENT ON COLUMN webhook.backfills.rows_sent IS 'Rows queued as BACKFILL events so far (those the filters let through).';
COMMENT ON COLUMN webhook.backfills.rows_estimated IS 'The planner''s estimate of the table''s rows when it started (reltuples, all partitions).';
COMMENT ON COLUMN webhook.backfills.filter IS 'The extra condition given to webhook.backfill(); NULL: none.';
COMMENT ON COLUMN webhook.backfills.last_key IS 'Primary key of the last row read, one text per key column; the next chunk starts after it. NULL for a reader who may not read the table whole now.';
COMMENT ON COLUMN webhook.backfills.started_by IS 'Who called webhook.backfill().';
COMMENT ON COLUMN webhook.backfills.started_at IS 'When webhook.backfill() was called.';
COMMENT ON COLUMN webhook.backfills.finished_at IS 'When it was done, canceled or failed; NULL while running.';
COMMENT ON COLUMN webhook.backfills.last_error IS 'Why it failed or was canceled, or the last error of a chunk that will be retried; NULL for a reader who does not manage the subscription (a chunk runs as its owner, and its error may quote what it read).';

-- Where a subscription's callback OID was read (see _subscriptions.callback_oid): this copy of
-- the database and this cluster, which pg_upgrade (new function OIDs) does not keep.
CREATE FUNCTION webhook._binding_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._instance_id() OPERATOR(pg_catalog.||) '/'
             OPERATOR(pg_catalog.||) webhook._system_identifier() $$;
REVOKE ALL ON FUNCTION webhook._binding_key() FROM PUBLIC;
COMMENT ON FUNCTION webhook._binding_key() IS
    'Internal: which copy of the database and which cluster a callback OID was read in.';
REVOKE ALL ON FUNCTION webhook._system_identifier() FROM PUBLIC;
COMMENT ON FUNCTION webhook._system_identifier() IS
    'Internal: this cluster''s system identifier, which pg_upgrade does not keep.';

-- Members of pg_read_all_data and pg_write_all_data may read and write every table whatever its
-- privileges say: the subscriptions' secrets, what receivers answered, rows of tables they may
-- not read (hidden by a row-level security policy of the subscribed table, too), and the owner
-- column that decides whose rights a subscription runs with. Row-level security without a
-- policy shows them no row and lets them change none. The tables' owner (the extension's, a
-- superuser when it was made) and superusers are not subject to it, nor the views, which read
-- as their owner. A dump by a role that is not a superuser needs BYPASSRLS.
ALTER TABLE webhook._instance ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._event_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._event_archive ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._delivery_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._triggers_made ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._callback_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._backfills ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._backfill_rounds ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook._batches_out ENABLE ROW LEVEL SECURITY;

-- Every value of the tables holding secrets and an owner's SQL or rows stays in the row
-- (compressed if need be) rather than in the TOAST table, short of a row that would not fit a
-- page: row-level security guards a table, not its TOAST table, which pg_read_all_data may
-- read. (Of the secrets alone, large headers pushed the URL and the others out of line.)
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN SELECT a.attrelid::pg_catalog.regclass AS tab, a.attname
                 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid OPERATOR(pg_catalog.=) ANY (ARRAY['webhook._subscriptions',
                          'webhook._backfills']::pg_catalog.regclass[])
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                  AND a.attstorage OPERATOR(pg_catalog.=) 'x'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET STORAGE MAIN',
                                  col.tab, col.attname);
    END LOOP;
END
$$;

-- Delivery is ready from CREATE EXTENSION on: the commit asks the launcher for this database's
-- workers.
COMMENT ON FUNCTION webhook._request_workers() IS
    'Internal: asks the launcher for this database''s delivery workers when the transaction commits.';
REVOKE ALL ON FUNCTION webhook._request_workers() FROM PUBLIC;
SELECT webhook._request_workers();
