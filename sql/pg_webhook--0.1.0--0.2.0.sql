-- pg_webhook 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pg_webhook UPDATE; every change here is
-- also in the 0.2.0 install script, and a test checks that both give the same catalog.
\echo Use "ALTER EXTENSION pg_webhook UPDATE" to load this file. \quit

-- webhook.ping(): a signed test request to a subscription's endpoint.
CREATE FUNCTION webhook."_ping"(
	"name" TEXT
) RETURNS TABLE (
	"delivered" bool,
	"status_code" INT,
	"duration_ms" double precision,
	"error" TEXT,
	"response_excerpt" TEXT,
	"webhook_id" TEXT
)
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'ping_wrapper';

CREATE FUNCTION webhook.ping(name text)
RETURNS TABLE (delivered boolean, status_code integer, duration_ms double precision,
               error text, response_excerpt text, webhook_id text)
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM webhook._ping(name) $$;
COMMENT ON FUNCTION webhook.ping(text) IS
$$Send a signed test event (type PING, no rows, in the subscription's format) to its endpoint now and return the outcome.
Works on paused and disabled subscriptions too; nothing is queued or recorded.$$;
COMMENT ON FUNCTION webhook._ping(text) IS 'Internal: implements webhook.ping().';
REVOKE ALL ON FUNCTION webhook.ping(text), webhook._ping(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook.ping(text), webhook._ping(text) TO webhook_admin;

-- Ordered delivery, per-subscription limits and callbacks.
ALTER TABLE webhook._subscriptions
    ADD COLUMN ordered       boolean NOT NULL DEFAULT false,
    ADD COLUMN max_in_flight integer,
    ADD COLUMN rate_limit    double precision,
    ADD COLUMN callback      regprocedure,
    ADD CONSTRAINT max_in_flight_is_positive CHECK (max_in_flight > 0),
    ADD CONSTRAINT rate_limit_is_positive CHECK (rate_limit > 0);
ALTER TABLE webhook._event_queue ADD COLUMN ordered boolean NOT NULL DEFAULT false;
CREATE INDEX event_queue_ordered ON webhook._event_queue (subscription_id, id) WHERE ordered;
ALTER TABLE webhook._event_archive ADD COLUMN callback_error text;
CREATE TABLE webhook._callback_queue (
    event_id         bigint PRIMARY KEY,
    subscription_id  integer NOT NULL,
    response_headers jsonb
);
REVOKE ALL ON webhook._callback_queue FROM PUBLIC;

CREATE OR REPLACE VIEW webhook.subscriptions WITH (security_barrier) AS
SELECT s.id, s.name, s.target, s.url, s.events,
       CASE WHEN v.manages THEN s.secret END AS secret,
       CASE WHEN v.manages THEN s.headers END AS headers,
       s.timeout, s.max_attempts, s.retry_schedule, s.format, s.filter, s.columns,
       s.exclude_columns, s.skip_unchanged, s.status, s.status_reason, s.owner,
       s.created_at, s.uid,
       CASE WHEN v.manages THEN s.previous_secret END AS previous_secret,
       s.previous_secret_expires_at, s.failing_since,
       s.ordered, s.max_in_flight, s.rate_limit, s.callback
  FROM webhook._subscriptions s
  JOIN webhook._visible_subscriptions v ON v.id = s.id;

CREATE OR REPLACE VIEW webhook.events WITH (security_barrier) AS
SELECT q.id, q.subscription_id, q.op, q.table_schema, q.table_name, q.record, q.old_record,
       CASE WHEN q.next_attempt_at = 'infinity' THEN 'parked' ELSE 'pending' END AS status,
       q.attempts,
       COALESCE(q.next_attempt_at, q.created_at) AS next_attempt_at, q.last_error, q.created_at,
       NULL::timestamptz AS finished_at, NULL::text AS callback_error
  FROM webhook._event_queue q
 WHERE q.subscription_id IN (SELECT v.id FROM webhook._visible_subscriptions v)
UNION ALL
SELECT a.id, a.subscription_id, a.op, a.table_schema, a.table_name, a.record, a.old_record,
       a.status, a.attempts, NULL::timestamptz, a.last_error, a.created_at, a.finished_at,
       a.callback_error
  FROM webhook._event_archive a
 WHERE a.subscription_id IN (SELECT v.id FROM webhook._visible_subscriptions v);

-- subscribe() gains ordered, max_in_flight, rate_limit and callback; _subscribe with them.
DROP FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean);
DROP FUNCTION webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean);
CREATE FUNCTION webhook."_subscribe"(
	"name" TEXT,
	"target" oid,
	"url" TEXT,
	"events" TEXT[],
	"secret" TEXT,
	"headers" jsonb,
	"timeout_ms" bigint,
	"max_attempts" INT,
	"retry_schedule_ms" bigint[],
	"format" TEXT,
	"filter" TEXT,
	"columns" TEXT[],
	"exclude_columns" TEXT[],
	"skip_unchanged" bool,
	"ordered" bool,
	"max_in_flight" INT,
	"rate_limit" double precision,
	"callback" oid
) RETURNS INT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'subscribe_with_delivery_wrapper';
COMMENT ON FUNCTION webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid) IS
    'Internal: validates and creates a subscription for webhook.subscribe(). Call webhook.subscribe() instead.';

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
    callback       regprocedure DEFAULT NULL -- f(jsonb), run after each success and each death
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
        (extract(epoch FROM timeout) * 1000)::bigint,
        max_attempts,
        CASE WHEN retry_schedule IS NOT NULL THEN
            COALESCE((SELECT array_agg((extract(epoch FROM d) * 1000)::bigint ORDER BY o)
                        FROM unnest(retry_schedule) WITH ORDINALITY AS u(d, o)), '{}')
        END,
        format, filter, columns, exclude_columns, skip_unchanged,
        ordered, max_in_flight, rate_limit, callback::oid);
    SELECT s.* INTO created FROM webhook.subscriptions s WHERE s.id = new_id;
    RETURN created;
END
$$;

COMMENT ON FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure) IS
$$Send every committed INSERT, UPDATE and/or DELETE on a table to an HTTP endpoint as a signed JSON POST.
Returns the new subscription, including its secret (generated when NULL).
Example: SELECT * FROM webhook.subscribe('orders_to_billing', 'orders', 'https://billing.example.com/hooks');
Default retry schedule after a failure: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (±20 % jitter), 8 attempts.
format: database (default; Supabase-compatible), standard (Standard Webhooks envelope) or cloudevents (CloudEvents 1.0 JSON).
filter: a condition over NEW and OLD; columns / exclude_columns choose what is sent; skip_unchanged drops UPDATEs of unsent columns only.
ordered: deliver one event at a time in commit order (writers of the table then commit one at a time); max_in_flight / rate_limit: this subscription's own limits.
callback: a function f(event jsonb) run as the owner after each event is delivered or dies, with the outcome.$$;

REVOKE ALL ON FUNCTION
    webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure),
    webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure),
    webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid)
TO webhook_admin;

-- The launcher: workers per database, asked for at commit.
CREATE FUNCTION webhook."_request_workers"() RETURNS void
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'request_workers_at_commit_wrapper';
COMMENT ON FUNCTION webhook._request_workers() IS
    'Internal: asks the launcher for this database''s delivery workers when the transaction commits.';
REVOKE ALL ON FUNCTION webhook._request_workers() FROM PUBLIC;
SELECT webhook._request_workers();
