-- pg_webhook: who may see what. The role webhook_admin and the views users read, where the
-- visibility rules apply. After queue.sql.

-- API: Private. Why each subscription's owner may no longer read its whole table (NULL: it
-- may): the SELECT privilege is gone, or row-level security policies now apply to the owner
-- (as check_enable_rls decides: not for superusers, BYPASSRLS roles, or the table's owner
-- without FORCE ROW LEVEL SECURITY). The delivery worker holds such a subscription's events
-- instead of sending them, checking this after it reads them, so a REVOKE committed before a
-- claim is never missed. A dropped table's queued events are still delivered: they were
-- captured while it existed.
CREATE VIEW webhook._owner_access AS
SELECT s.id,
       CASE
           -- A dropped table's queued events are delivered (captured while it existed),
           -- unless they were held because the owner could no longer read it.
           WHEN c.oid IS NULL THEN
               CASE WHEN s.read_denied
                    THEN pg_catalog.format('its owner %s could no longer read its table when its events were held, and the table is gone',
                                           s.owner)
               END
           -- An orphan (see _subscriptions.owner_dropped), even where its OID names a role.
           WHEN s.owner_dropped OR r.oid IS NULL
           THEN pg_catalog.format('its owner''s role (OID %s) was dropped; a superuser may hand it over with webhook.set_owner()',
                                  s.owner::pg_catalog.oid)
           -- From the table's ACL as this statement's snapshot sees it (has_table_privilege
           -- would read a cache that may not have caught up with a REVOKE committed just
           -- before): superusers and the owner may, and whoever holds SELECT directly, through
           -- a role, or through PUBLIC.
           WHEN NOT (COALESCE(r.rolsuper, false)
                     OR pg_catalog.pg_has_role(s.owner::pg_catalog.oid, c.relowner, 'USAGE')
                     OR EXISTS (SELECT 1
                                  FROM pg_catalog.aclexplode(COALESCE(
                                           c.relacl, pg_catalog.acldefault('r', c.relowner))) a
                                 WHERE a.privilege_type = 'SELECT'
                                   AND (a.grantee = 0
                                        OR pg_catalog.pg_has_role(s.owner::pg_catalog.oid,
                                                                  a.grantee, 'USAGE'))))
           THEN pg_catalog.format('its owner %s may no longer read %s (SELECT was revoked)',
                                  s.owner, s.target)
           -- USAGE on the table's schema, from its ACL in the same way: without it the owner
           -- cannot read the table either.
           WHEN NOT (COALESCE(r.rolsuper, false)
                     OR pg_catalog.pg_has_role(s.owner::pg_catalog.oid, n.nspowner, 'USAGE')
                     OR EXISTS (SELECT 1
                                  FROM pg_catalog.aclexplode(COALESCE(
                                           n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
                                 WHERE a.privilege_type = 'USAGE'
                                   AND (a.grantee = 0
                                        OR pg_catalog.pg_has_role(s.owner::pg_catalog.oid,
                                                                  a.grantee, 'USAGE'))))
           THEN pg_catalog.format('its owner %s may no longer read %s (USAGE on schema %s was revoked)',
                                  s.owner, s.target, n.nspname)
           WHEN c.relrowsecurity
                AND NOT COALESCE(r.rolsuper OR r.rolbypassrls, false)
                AND (c.relforcerowsecurity
                     OR NOT pg_catalog.pg_has_role(s.owner::pg_catalog.oid, c.relowner, 'USAGE'))
           THEN pg_catalog.format('row-level security on %s now applies to its owner %s',
                                  s.target, s.owner)
       END AS denied
  FROM webhook._subscriptions s
  LEFT JOIN pg_catalog.pg_class c ON c.oid = s.target::pg_catalog.oid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.owner::pg_catalog.oid;
COMMENT ON VIEW webhook._owner_access IS
    'Internal: why each subscription''s owner may no longer read its whole table (NULL: it may).';
REVOKE ALL ON webhook._owner_access FROM PUBLIC;

-- Who may do what. Creating a subscription is a privilege: superusers and members of
-- webhook_admin. Roles are cluster-wide, so the role outlives the extension and is shared by
-- every database that installs it.
--
-- The role may exist already: another database of the cluster installed pg_webhook, or someone
-- made it beforehand (a CREATEROLE user, hoping to be let in). It is taken over only when it is
-- what this script would create — no login, no attributes, no password — and its existing
-- members are named, so adopting it is never silent.
DO $$
DECLARE
    r pg_catalog.pg_authid;
    members text;
BEGIN
    SELECT * INTO r FROM pg_catalog.pg_authid WHERE rolname = 'webhook_admin';
    IF NOT FOUND THEN
        CREATE ROLE webhook_admin NOLOGIN;
        RETURN;
    END IF;
    IF r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
       OR r.rolbypassrls OR r.rolpassword IS NOT NULL THEN
        RAISE EXCEPTION 'role webhook_admin already exists and is not the plain NOLOGIN role pg_webhook uses'
            USING DETAIL = 'It can log in, has a password, or has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS: whoever made it could act as every webhook administrator.',
                  HINT = 'Review the role (\du webhook_admin); drop it, or ALTER ROLE webhook_admin NOLOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD NULL, then create the extension again.';
    END IF;
    SELECT pg_catalog.string_agg(m.member::pg_catalog.regrole::pg_catalog.text, ', ' ORDER BY 1)
      INTO members
      FROM pg_catalog.pg_auth_members m WHERE m.roleid = r.oid;
    IF members IS NOT NULL THEN
        RAISE WARNING 'role webhook_admin already exists; its members may create webhook subscriptions in this database: %', members
            USING HINT = 'If one of them should not, REVOKE webhook_admin FROM <role>;';
    END IF;
END
$$;
GRANT USAGE ON SCHEMA webhook TO webhook_admin;

-- API: Private. The subscriptions whose events the current user may see: their own, for
-- superusers all, and those on tables the user can read whole whose events no payload or filter
-- of their owner's made or chose. `manages`: the user owns it (or is a superuser) and so may see
-- its secret and headers, and the errors of its callback and backfills. Views read base tables
-- with their owner's rights but see the querying role as current_user, which is what is
-- checked here.
CREATE VIEW webhook._visible_subscriptions WITH (security_barrier) AS
SELECT s.id,
       -- An orphan (owner_dropped) is nobody's, whatever role its owner's OID names now.
       (r.rolsuper OR (NOT s.owner_dropped AND pg_catalog.pg_has_role(r.oid, s.owner::oid, 'USAGE')))
           AS manages,
       -- The rows its events carry are shown to superusers, and to anyone else — its owner
       -- too — only while they may read the table whole: an owner who lost SELECT, USAGE on
       -- the schema or came under row-level security does not read through the events what
       -- the table now refuses (those events are held, see _owner_access). A dropped table's
       -- events stay readable to whoever sees them, unless they were held so.
       (r.rolsuper OR (c.oid IS NULL AND NOT s.read_denied) OR w.whole) AS reads_rows
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_roles r ON r.rolname = current_user
  LEFT JOIN pg_catalog.pg_class c ON c.oid = s.target::oid
  -- Whether the user may read the table whole: SELECT on the table, USAGE on its schema, and
  -- no row-level security policy applying to them (the events carry every row).
  CROSS JOIN LATERAL (
      SELECT CASE WHEN c.oid IS NOT NULL
                       AND COALESCE(pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT'), false)
                       AND COALESCE(pg_catalog.has_schema_privilege(r.oid, c.relnamespace,
                                                                    'USAGE'), false)
                  THEN NOT pg_catalog.row_security_active(c.oid)
                  ELSE false END AS whole) w
 WHERE r.rolsuper
    OR (NOT s.owner_dropped AND pg_catalog.pg_has_role(r.oid, s.owner::oid, 'USAGE'))
    -- Others see events of tables they may read whole, and only of subscriptions whose events
    -- no code of the owner's chose or made: a payload may carry what its owner reads in other
    -- tables, and which rows a filter (the subscription's or a backfill's) let through — the
    -- events' very existence, and their counts — may tell what it read there.
    OR (s.payload IS NULL AND s.filter IS NULL AND w.whole
        AND NOT EXISTS (SELECT FROM webhook._backfills b
                         WHERE b.subscription_id = s.id AND b.filter IS NOT NULL));
COMMENT ON VIEW webhook._visible_subscriptions IS
    'Internal: subscriptions whose rows the current user may read, and whether the user manages each.';
REVOKE ALL ON webhook._visible_subscriptions FROM PUBLIC;

-- API: Private. Per subscription, one of its capture triggers that does not fire in an
-- ordinary session (tgenabled D: disabled, R: only where session_replication_role is replica;
-- by ALTER TABLE, or pg_restore --disable-triggers while it runs): changes to that table go
-- uncaptured while it is so. Shown in status_reason. Triggers are pg_webhook's by their
-- function's OID; the first argument names the subscription.
CREATE VIEW webhook._capture_off AS
SELECT f.subscription_id,
       -- (In the database's collation, as the status_reason it goes in: a name's is "C".)
       pg_catalog.min(pg_catalog.format('%I on %s', t.tgname, t.tgrelid::pg_catalog.regclass)
                      COLLATE pg_catalog."default") AS trigger_name
  FROM pg_catalog.pg_trigger t
  CROSS JOIN LATERAL (
      SELECT pg_catalog.split_part(pg_catalog.encode(pg_catalog.substring(t.tgargs, 1,
                 GREATEST(pg_catalog.position(t.tgargs, pg_catalog.decode('00', 'hex')) - 1, 0)),
                 'escape'), ':', 1) AS first) a
  CROSS JOIN LATERAL (
      SELECT CASE WHEN a.first OPERATOR(pg_catalog.~) '^[0-9]{1,9}$'
                  THEN a.first::pg_catalog.int4 END AS subscription_id) f
 WHERE t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure('webhook._capture()')::pg_catalog.oid
   AND t.tgenabled OPERATOR(pg_catalog.<>) ALL (ARRAY['O', 'A']::pg_catalog."char"[])
   AND f.subscription_id IS NOT NULL
 GROUP BY f.subscription_id;
COMMENT ON VIEW webhook._capture_off IS
    'Internal: capture triggers that do not fire in an ordinary session, one per subscription.';
COMMENT ON COLUMN webhook._capture_off.subscription_id IS 'The subscription the trigger captures for.';
COMMENT ON COLUMN webhook._capture_off.trigger_name IS 'One such trigger of it, and its table (trigger on table).';
REVOKE ALL ON webhook._capture_off FROM PUBLIC;

-- API: Public.
CREATE VIEW webhook.subscriptions WITH (security_barrier) AS
SELECT s.id, s.name, s.target,
       CASE WHEN v.manages THEN s.url
            ELSE pg_catalog.substring(s.url, '^[^:/?#]+://[^/?#]*') || '/…' END AS url,
       s.events,
       CASE WHEN v.manages THEN s.secret END AS secret,
       CASE WHEN v.manages THEN s.headers END AS headers,
       s.timeout, s.max_attempts, s.retry_schedule, s.format, s.filter, s.columns,
       s.exclude_columns, s.skip_unchanged, s.status,
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
       s.owner,
       s.created_at, s.uid,
       CASE WHEN v.manages THEN s.previous_secret END AS previous_secret,
       s.previous_secret_expires_at, s.failing_since,
       s.ordered, s.max_in_flight, s.rate_limit, s.callback, s.batch_size, s.batch_wait,
       s.order_key, s.group_by, s.payload,
       CASE WHEN v.manages THEN s.client_cert END AS client_cert,
       CASE WHEN v.manages THEN s.client_key END AS client_key,
       CASE WHEN v.manages THEN s.auth
            WHEN s.auth IS NOT NULL
            THEN pg_catalog.jsonb_build_object('type', s.auth -> 'type') END AS auth
  FROM webhook._visible_subscriptions v
  -- Behind a fence (OFFSET 0) no condition of the reader's passes: pushed down to the scan of
  -- the private table, below the join that keeps only the reader's subscriptions, a
  -- leakproof one (filter = '...') made EXPLAIN ANALYZE's row counts answer guesses at
  -- subscriptions the reader may not see.
  CROSS JOIN LATERAL (SELECT * FROM webhook._subscriptions s0
                       WHERE s0.id = v.id OFFSET 0) s
  LEFT JOIN webhook._capture_off o ON o.subscription_id = s.id;

-- API: Public. Queued and finished events in one place; status is pending, delivered or dead.
CREATE VIEW webhook.events WITH (security_barrier) AS
SELECT q.id, q.subscription_id, q.op, q.table_schema, q.table_name,
       CASE WHEN v.reads_rows THEN q.record END AS record,
       CASE WHEN v.reads_rows THEN q.old_record END AS old_record,
       CASE WHEN q.next_attempt_at = 'infinity' THEN 'parked' ELSE 'pending' END AS status,
       q.attempts,
       COALESCE(q.next_attempt_at, q.created_at) AS next_attempt_at,
       CASE WHEN v.manages THEN q.last_error END AS last_error, q.created_at,
       NULL::timestamptz AS finished_at, NULL::text AS callback_error, q.timeline
  FROM webhook._event_queue q
  JOIN webhook._visible_subscriptions v ON v.id = q.subscription_id
UNION ALL
SELECT a.id, a.subscription_id, a.op, a.table_schema, a.table_name,
       CASE WHEN v.reads_rows THEN a.record END,
       CASE WHEN v.reads_rows THEN a.old_record END,
       a.status, a.attempts, NULL::timestamptz, CASE WHEN v.manages THEN a.last_error END,
       a.created_at, a.finished_at,
       CASE WHEN v.manages THEN a.callback_error END, a.timeline
  FROM webhook._event_archive a
  JOIN webhook._visible_subscriptions v ON v.id = a.subscription_id;

-- API: Public. What the endpoint answered, and errors, only to those who manage the
-- subscription: an answer to a request made with its secret, headers, token or client
-- certificate may quote what those reach (a 404 page quoting the path, a header echoed).
CREATE VIEW webhook.attempts WITH (security_barrier) AS
SELECT t.event_id, t.attempt, t.subscription_id, t.started_at, t.duration_ms, t.status_code,
       CASE WHEN v.manages THEN t.response_excerpt END AS response_excerpt,
       CASE WHEN v.manages THEN t.error END AS error, t.outcome
  FROM webhook._attempts t
  JOIN webhook._visible_subscriptions v ON v.id = t.subscription_id
UNION ALL
SELECT a.id, a.attempts, a.subscription_id, a.final_started_at, a.final_duration_ms,
       a.final_status_code, CASE WHEN v.manages THEN a.final_response_excerpt END,
       CASE WHEN v.manages THEN a.final_error END, a.status
  FROM webhook._event_archive a
  JOIN webhook._visible_subscriptions v ON v.id = a.subscription_id
 WHERE a.final_started_at IS NOT NULL;

GRANT SELECT ON webhook.subscriptions, webhook.events, webhook.attempts TO webhook_admin;

COMMENT ON VIEW webhook.subscriptions IS
    'Webhook subscriptions: which table, which events, where they go and how they are retried. Status is active, paused, disabled or unsubscribed (queued events still delivered).';
COMMENT ON VIEW webhook.events IS
    'Every captured row change: pending (queued for a first or further attempt), parked (its subscription is paused, disabled or may not read its table), delivered, or dead (kept after its last failed attempt).';
COMMENT ON VIEW webhook.attempts IS
    'Every HTTP delivery attempt: when, how long, the status code or transport error, a bounded excerpt of the response, and what the worker decided (delivered, retry, dead).';
COMMENT ON COLUMN webhook.subscriptions.uid IS
    'Random id that prefixes every webhook-id of this subscription (msg_<uid>_<event id>, with .<timeline> after it on every WAL timeline but the first).';
COMMENT ON COLUMN webhook.subscriptions.url IS
    'Where events are sent. Shown whole to the subscription''s owner (and superusers); others see only the scheme and host, since paths and query strings often carry tokens.';
COMMENT ON COLUMN webhook.subscriptions.secret IS
    'Standard Webhooks signing secret (whsec_ + base64); receivers verify webhook-signature with it.';
COMMENT ON COLUMN webhook.events.next_attempt_at IS
    'When a pending event is due; NULL once finished.';
COMMENT ON COLUMN webhook.attempts.outcome IS
    'What the worker decided after this attempt: delivered, retry (another attempt is scheduled) or dead.';

-- API: Public. Backfills of the subscriptions the reader may see (the same rule as
-- webhook.events: last_key holds row values; last_error, an error of a chunk run as the
-- subscription's owner, only to those who manage it).
CREATE VIEW webhook.backfills WITH (security_barrier) AS
SELECT b.id, b.subscription_name AS subscription, b.subscription_id, b.state, b.rows_sent,
       b.rows_estimated, b.filter, CASE WHEN v.reads_rows THEN b.last_key END AS last_key,
       b.started_by, b.started_at, b.finished_at,
       CASE WHEN v.manages THEN b.last_error END AS last_error
  FROM webhook._visible_subscriptions v
  -- Behind a fence, as in webhook.subscriptions.
  CROSS JOIN LATERAL (SELECT b0.*, s0.name AS subscription_name
                        FROM webhook._backfills b0
                        JOIN webhook._subscriptions s0 ON s0.id = b0.subscription_id
                       WHERE b0.subscription_id = v.id OFFSET 0) b;
GRANT SELECT ON webhook.backfills TO webhook_admin;
COMMENT ON VIEW webhook.backfills IS
    'Each webhook.backfill(): its subscription, state (running, done, canceled, failed), rows sent so far against the planner''s estimate, when it started and finished, and why it failed.';

-- Every column of every view says what it holds (\d+ webhook.<view>); a test checks none is
-- missing (subscription_stats: sql/stats.sql).
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
COMMENT ON COLUMN webhook._visible_subscriptions.id IS 'A subscription the current user may see: as a superuser, its owner, or one who may read the table whole, if no payload or filter of the owner''s (its own or a backfill''s) made or chose its events.';
COMMENT ON COLUMN webhook._visible_subscriptions.manages IS 'The current user owns it (or is a superuser), so may see its secret, headers and URL, and the errors of its callback and backfills.';
COMMENT ON COLUMN webhook._visible_subscriptions.reads_rows IS 'The current user may see the rows its events carry: a superuser, or one who may read the table whole now (or the table is gone).';
COMMENT ON COLUMN webhook._owner_access.id IS 'Subscription id.';
COMMENT ON COLUMN webhook._owner_access.denied IS 'Why its owner may no longer read its whole table; NULL: it may.';
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
