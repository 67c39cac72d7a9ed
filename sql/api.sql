-- pg_webhook: the public SQL API. Thin PL/pgSQL wrappers give each function its documented
-- signature, defaults and comment; the work is done by the Rust functions _subscribe and
-- _unsubscribe, which validate every argument and check the caller's privileges. Run last (after
-- sql/stats.sql and sql/internals.sql): it also closes the private tables to readers of all data
-- and asks for this database's workers.

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
