-- pg_webhook 0.2.0 -> 0.3.0. Run by ALTER EXTENSION pg_webhook UPDATE; every change here is
-- also in the 0.3.0 install script, and a test checks that both give the same catalog.
\echo Use "ALTER EXTENSION pg_webhook UPDATE" to load this file. \quit

-- Only in a UTF8 database. Webhooks carry JSON, which is UTF-8, and the worker reads the
-- queue's text (row images, names) into Rust as UTF-8: in a database of another encoding, text
-- outside ASCII (a 'é' in a LATIN1 row, a byte over 127 in a SQL_ASCII one) cannot be read so,
-- and the first such event would stop every delivery of the database.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'pg_webhook needs a database encoded in UTF8, and database "%" is encoded in %',
                pg_catalog.current_database(), pg_catalog.getdatabaseencoding()
            USING HINT = 'Webhooks carry JSON, which is UTF-8. Make a UTF8 database (CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0), move the data there (pg_dump and pg_restore convert it), and install pg_webhook 0.3.0 in it.',
                  ERRCODE = 'feature_not_supported';
    END IF;
END $$;

-- Only superusers may add to the schema, and nothing may grant its private objects on: the
-- checks CREATE EXTENSION makes (see schema.sql), but for what the schema holds. The objects
-- this update makes would get the default privileges of the schema and of the updating role.
DO $$
DECLARE
    owner_name name;
    found text;
BEGIN
    SELECT r.rolname INTO owner_name
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE n.nspname OPERATOR(pg_catalog.=) 'webhook' AND NOT r.rolsuper;
    IF owner_name IS NOT NULL THEN
        RAISE EXCEPTION 'schema webhook is owned by role "%", who is not a superuser, and could add functions that shadow pg_webhook''s', owner_name
            USING HINT = 'Check what that role put in the schema, make a superuser its owner (ALTER SCHEMA webhook OWNER TO postgres), then update again.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                ELSE pg_catalog.format('role "%s"', r.rolname) END
      INTO found
      FROM pg_catalog.pg_namespace n
     CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE n.nspname OPERATOR(pg_catalog.=) 'webhook'
       AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
       AND NOT COALESCE(r.rolsuper, false)
     LIMIT 1;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'schema webhook grants CREATE to %, who could add functions that shadow pg_webhook''s', found
            USING HINT = 'Check what they put in the schema, revoke it (REVOKE CREATE ON SCHEMA webhook FROM ...), then update again.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT pg_catalog.format('%s (default privileges of role "%s" %s)',
                             CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                  ELSE pg_catalog.format('role "%s"', g.rolname) END,
                             pg_catalog.pg_get_userbyid(d.defaclrole),
                             CASE WHEN d.defaclnamespace OPERATOR(pg_catalog.=) 0
                                  THEN 'everywhere' ELSE 'in schema webhook' END)
      INTO found
      FROM pg_catalog.pg_default_acl d
     CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a
      LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE (d.defaclnamespace OPERATOR(pg_catalog.=)
                (SELECT n.oid FROM pg_catalog.pg_namespace n
                  WHERE n.nspname OPERATOR(pg_catalog.=) 'webhook')
            OR (d.defaclnamespace OPERATOR(pg_catalog.=) 0
                AND d.defaclrole OPERATOR(pg_catalog.=)
                    (SELECT u.oid FROM pg_catalog.pg_roles u
                      WHERE u.rolname OPERATOR(pg_catalog.=) CURRENT_USER)))
       AND d.defaclobjtype OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'S', 'f']::pg_catalog."char"[])
       AND a.grantee OPERATOR(pg_catalog.<>) d.defaclrole
       -- Functions are PUBLIC's by default; the script revokes that where it must.
       AND NOT (a.grantee OPERATOR(pg_catalog.=) 0
                AND d.defaclobjtype OPERATOR(pg_catalog.=) 'f')
       AND NOT COALESCE(g.rolsuper, false)
     LIMIT 1;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'default privileges would grant % rights on pg_webhook''s private tables and functions (secrets included)', found
            USING HINT = 'Update as a superuser without such default privileges, or change them (ALTER DEFAULT PRIVILEGES ... REVOKE), then update again.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT p.pubname INTO found
      FROM pg_catalog.pg_publication_namespace pn
      JOIN pg_catalog.pg_publication p ON p.oid OPERATOR(pg_catalog.=) pn.pnpubid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) pn.pnnspid
     WHERE n.nspname OPERATOR(pg_catalog.=) 'webhook'
     LIMIT 1;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'schema webhook is in publication "%", which would send pg_webhook''s private tables (secrets included) to its subscribers', found
            USING HINT = 'Take it out (ALTER PUBLICATION ... DROP TABLES IN SCHEMA webhook), then update again.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- The queue is keyed by (txid, id): outcomes are recorded by key (a ctid is only where they
-- look first, the key checked there), pg_repack can rebuild it, and FOR ALL TABLES
-- publications have a replica identity. The key replaces the partial index that found new
-- events. Claims are bounded by bytes, so each event carries the size of its row images.
ALTER TABLE webhook._event_queue
    ADD COLUMN payload_bytes integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT event_queue_key PRIMARY KEY (txid, id);
DROP INDEX webhook.event_queue_new;
-- Archived events keep their size, for replays. Those archived before 0.3.0 have none (0): a
-- replay uses their stored size instead.
ALTER TABLE webhook._event_archive ADD COLUMN payload_bytes integer NOT NULL DEFAULT 0;
-- A callback counts its starts, so one whose runner died mid-call is not started for ever.
ALTER TABLE webhook._callback_queue ADD COLUMN starts integer NOT NULL DEFAULT 0;
-- Batches: events per request and how long a partial batch waits; each queued event
-- remembers the batch it was last sent in, so a retry goes out in the same one.
ALTER TABLE webhook._subscriptions
    ADD COLUMN batch_size integer NOT NULL DEFAULT 1,
    ADD COLUMN batch_wait interval NOT NULL DEFAULT '0',
    ADD COLUMN order_key text[],
    ADD COLUMN group_by text,
    ADD COLUMN payload text,
    ADD CONSTRAINT group_by_is_known CHECK (group_by IN ('transaction')),
    ADD CONSTRAINT batch_size_is_in_range CHECK (batch_size BETWEEN 1 AND 1000),
    ADD CONSTRAINT batch_wait_is_in_range CHECK (batch_wait BETWEEN '0' AND '1 minute');
-- Receivers that demand authentication: a TLS client certificate and key, OAuth 2.0 client
-- credentials.
ALTER TABLE webhook._subscriptions
    ADD COLUMN client_cert text,
    ADD COLUMN client_key text,
    ADD COLUMN auth jsonb,
    ADD COLUMN read_denied boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT client_cert_with_key CHECK ((client_cert IS NULL) = (client_key IS NULL));
-- Which copy of the database this is (see schema.sql): the subscriptions made so far were
-- made here, and keep their uids.
CREATE TABLE webhook._instance (
    id   text NOT NULL,
    one  boolean PRIMARY KEY DEFAULT true CHECK (one)
);
INSERT INTO webhook._instance (id) VALUES (pg_catalog.gen_random_uuid()::pg_catalog.text);
CREATE FUNCTION webhook._instance_id() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT i.id OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) d.oid::pg_catalog.text
         FROM webhook._instance i, pg_catalog.pg_database d
        WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database() $$;
REVOKE ALL ON FUNCTION webhook._instance_id() FROM PUBLIC;
COMMENT ON FUNCTION webhook._instance_id() IS
    'Internal: which copy of the database this is (webhook._instance and the database''s OID), as subscriptions note it.';
ALTER TABLE webhook._subscriptions ADD COLUMN instance text;
UPDATE webhook._subscriptions SET instance = webhook._instance_id();
-- Orphans (see schema.sql): those whose owner's role is gone already.
ALTER TABLE webhook._subscriptions ADD COLUMN owner_dropped boolean NOT NULL DEFAULT false;
UPDATE webhook._subscriptions s SET owner_dropped = true
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_authid a WHERE a.oid = s.owner::pg_catalog.oid);
-- 0.2.0 gave a retry_schedule without max_attempts one attempt more than its delays, with no
-- upper bound; the worker refuses more than 100 attempts, so such a subscription's events would
-- be retried forever and never sent. It makes 100 now.
UPDATE webhook._subscriptions SET max_attempts = 100 WHERE max_attempts > 100;
ALTER TABLE webhook._event_queue ADD COLUMN batch bigint;
-- Per-key order: ordered events carry their key's hash; those queued before are all of one key.
ALTER TABLE webhook._event_queue ADD COLUMN order_key bigint;
ALTER TABLE webhook._event_archive ADD COLUMN order_key bigint;
-- Grouping by transaction: each event's part of its transaction's request, and the size of
-- the transaction.
ALTER TABLE webhook._event_queue ADD COLUMN part integer, ADD COLUMN tx_events integer;
-- The WAL timelines of an event and of its transaction (see queue.sql): those queued before
-- keep the webhook-ids they had, which name no timeline.
ALTER TABLE webhook._event_queue
    ADD COLUMN timeline integer NOT NULL DEFAULT 1,
    ADD COLUMN tx_timeline integer NOT NULL DEFAULT 1;
ALTER TABLE webhook._event_archive ADD COLUMN timeline integer NOT NULL DEFAULT 1;
UPDATE webhook._event_queue SET order_key = 0 WHERE ordered;
CREATE INDEX event_queue_order_key ON webhook._event_queue (subscription_id, order_key, id)
    WHERE ordered;
-- Queued images count as their size as text, which is what a worker reads: uncompressed, with
-- their numbers written out (src/capture/text_size.rs; `9e131071` takes a few bytes stored and
-- 131,072 as text). Replays of events archived before count them the same way.
CREATE FUNCTION webhook._image_bytes(record jsonb, old_record jsonb) RETURNS integer
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_webhook_image_bytes';
REVOKE ALL ON FUNCTION webhook._image_bytes(jsonb, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION webhook._image_bytes(jsonb, jsonb) IS
    'Internal: the size of an event''s row images (either may be null) as text, which is what a delivery worker reads: their sizes uncompressed plus what their numbers grow by when written out, at most 2147483647.';
UPDATE webhook._event_queue SET payload_bytes = webhook._image_bytes(record, old_record);

-- The archive, the attempt log and the callback queue churn like the queue: the retention purge
-- (or the callback runner) deletes what the worker inserts, at the same rate. They are vacuumed
-- often, so freed space is reused and the footprint stays flat under a steady load, and never
-- truncated (the ACCESS EXCLUSIVE lock that takes would stall the worker).
ALTER TABLE webhook._event_archive SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
ALTER TABLE webhook._attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
-- Each subscription's due events, for the claim that reads past a subscription holding its
-- share (claim_scheduled_others.sql). Only events with a due time: capture never writes it.
CREATE INDEX event_queue_due_by_subscription
    ON webhook._event_queue (subscription_id, next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
-- The callback runner takes turns between subscriptions (pending_callbacks.sql): it finds
-- each one's oldest callbacks through this index.
CREATE INDEX callback_queue_subscription ON webhook._callback_queue (subscription_id, event_id);
ALTER TABLE webhook._callback_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);

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

-- Backfills (webhook.backfill()): the rows a table already has, sent as BACKFILL events. Made
-- here, before _visible_subscriptions, which hides subscriptions a backfill filter chose rows of.
-- API: Private. One row per backfill (webhook.backfill()): a subscription's rows that the table
-- already had, queued as BACKFILL events in chunks by primary key, each chunk in its own short
-- transaction that also records how far it got (last_key), so a crash or restart resumes after
-- the last committed chunk. At most one runs per subscription.
CREATE TABLE webhook._backfills (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id integer NOT NULL,
    -- An extra condition of the caller's over the table's columns (NULL: every row).
    filter          text,
    -- The primary key's columns when it started; a chunk reads the rows after last_key in
    -- their order.
    key_columns     text[] NOT NULL,
    -- The primary key of the last row read, as text per column (NULL: none read yet).
    last_key        text[],
    state           text NOT NULL DEFAULT 'running',
    rows_sent       bigint NOT NULL DEFAULT 0,
    rows_estimated  bigint NOT NULL DEFAULT 0,
    started_by      regrole NOT NULL,
    -- The subscription's owner when it started: its filter runs as that role only (one that
    -- changed hands meanwhile, webhook.set_owner(), stops it).
    owner           regrole NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    last_error      text,
    -- The transaction that started it: every chunk's events have a later txid, so counting
    -- what is still queued reads only the queue's newer part (the key is (txid, id)).
    started_txid    xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    -- Times a runner ended while running its chunks (the watchdog ends a runner whose chunk
    -- goes on after its cancel), over its life; the third fails the backfill.
    interruptions   integer NOT NULL DEFAULT 0,
    -- Chunks that failed in a row (kept here: the runner process that ran them hands over to
    -- another when another owner's turn comes); the third fails the backfill. The next chunk
    -- runs no sooner than retry_at.
    failures        integer NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    -- Chunks in a row that gave up waiting for a lock or lost a deadlock: not failures, but
    -- each doubles the wait before the next (up to 10 s), so a backfill held up by a long
    -- writer costs the runner little for as long as it waits.
    waits           integer NOT NULL DEFAULT 0,
    CONSTRAINT backfill_state_is_known CHECK (state IN ('running', 'done', 'canceled', 'failed'))
);
CREATE UNIQUE INDEX backfills_one_running ON webhook._backfills (subscription_id)
    WHERE state = 'running';

-- API: Private. The runner process (its pid) running a backfill's chunks now: a row from the
-- start of a round of its chunks (mark_running.sql) to the round's end (end_round.sql); one
-- another process left is its runner having ended while running them (the watchdog, a crash,
-- a restart). Apart from the backfill's row, which its owner's cancel_backfill() locks for as
-- long as the owner's transaction stays open: ending a round must neither wait for that nor,
-- giving up, leave a mark the next runner would count as an interruption.
CREATE TABLE webhook._backfill_rounds (
    backfill_id bigint PRIMARY KEY,
    pid         integer NOT NULL
);

-- Readers of a table see its events only if they may read it whole: row-level security and
-- schema USAGE count too.
CREATE OR REPLACE VIEW webhook._visible_subscriptions WITH (security_barrier) AS
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

-- The rows events carry are shown only to those who may read the table whole now.
CREATE OR REPLACE VIEW webhook.events WITH (security_barrier) AS
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

-- What the endpoint answered, and errors, only to those who manage the
-- subscription: an answer to a request made with its secret, headers, token or client
-- certificate may quote what those reach (a 404 page quoting the path, a header echoed).
CREATE OR REPLACE VIEW webhook.attempts WITH (security_barrier) AS
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

-- API: Private. The subscriptions whose triggers pg_webhook made, or saw complete, in this
-- database. Not dumped with the subscriptions: after a restore it is empty, so the worker's
-- trigger check does not take a restored subscription whose triggers pg_restore has yet to
-- create (they come after the table data) for one whose trigger was dropped by hand.
-- Filled at the end of this script (_sync_all_triggers).
CREATE TABLE webhook._triggers_made (subscription_id integer PRIMARY KEY);
REVOKE ALL ON webhook._triggers_made FROM PUBLIC;

-- Callbacks are kept by signature and bound by OID (see schema.sql): pg_upgrade refuses a
-- table or a view with a regprocedure column. The view goes first (made again below), with the
-- old subscribe(), which returns its row type (made again below, with new arguments).
DROP FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure);
DROP VIEW webhook.subscriptions;
CREATE FUNCTION webhook._callback_signature(f oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.format('%I.%I(pg_catalog.jsonb)', n.nspname, p.proname)
         FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
        WHERE p.oid OPERATOR(pg_catalog.=) f $$;
REVOKE ALL ON FUNCTION webhook._callback_signature(oid) FROM PUBLIC;
COMMENT ON FUNCTION webhook._callback_signature(oid) IS
    'Internal: a callback function''s signature, schema-qualified, as a subscription keeps it (NULL: no such function).';
CREATE  FUNCTION webhook."_system_identifier"() RETURNS TEXT /* String */
STRICT STABLE PARALLEL SAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'system_identifier_wrapper';
REVOKE ALL ON FUNCTION webhook._system_identifier() FROM PUBLIC;
COMMENT ON FUNCTION webhook._system_identifier() IS
    'Internal: this cluster''s system identifier, which pg_upgrade does not keep.';
CREATE FUNCTION webhook._binding_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._instance_id() OPERATOR(pg_catalog.||) '/'
             OPERATOR(pg_catalog.||) webhook._system_identifier() $$;
REVOKE ALL ON FUNCTION webhook._binding_key() FROM PUBLIC;
COMMENT ON FUNCTION webhook._binding_key() IS
    'Internal: which copy of the database and which cluster a callback OID was read in.';
ALTER TABLE webhook._subscriptions ADD COLUMN callback_oid oid, ADD COLUMN callback_bound_in text,
    ADD COLUMN callback_owner regrole;
UPDATE webhook._subscriptions
   SET callback_oid = callback::pg_catalog.oid, callback_bound_in = webhook._binding_key(),
       callback_owner = (SELECT p.proowner FROM pg_catalog.pg_proc p
                          WHERE p.oid OPERATOR(pg_catalog.=) callback::pg_catalog.oid)
 WHERE callback IS NOT NULL;
-- A callback whose function is gone keeps its OID as text: nothing binds to it again.
ALTER TABLE webhook._subscriptions ALTER COLUMN callback TYPE text
    USING COALESCE(webhook._callback_signature(callback::pg_catalog.oid),
                   callback::pg_catalog.oid::pg_catalog.text);
-- Random per subscription, mixed into the lock buckets of its order keys (see schema.sql).
ALTER TABLE webhook._subscriptions ADD COLUMN lock_salt bigint NOT NULL DEFAULT ('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8;
-- Unsubscribed subscriptions with no event left in the queue, which the worker no longer loads
-- (see schema.sql); the worker marks those already so.
ALTER TABLE webhook._subscriptions ADD COLUMN drained boolean NOT NULL DEFAULT false;

-- Per subscription, one of its capture triggers that does not fire in an
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

-- Readers of a table see a subscription's URL only up to its host.
CREATE OR REPLACE VIEW webhook.subscriptions WITH (security_barrier) AS
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

COMMENT ON COLUMN webhook.subscriptions.url IS
    'Where events are sent. Shown whole to the subscription''s owner (and superusers); others see only the scheme and host, since paths and query strings often carry tokens.';
COMMENT ON COLUMN webhook.subscriptions.secret IS
    'Standard Webhooks signing secret (whsec_ + base64); receivers verify webhook-signature with it.';
GRANT SELECT ON webhook.subscriptions TO webhook_admin;
COMMENT ON VIEW webhook.subscriptions IS
    'Webhook subscriptions: which table, which events, where they go and how they are retried. Status is active, paused, disabled or unsubscribed (queued events still delivered).';

-- Trigger functions and the machinery that keeps every partition's triggers in place.
CREATE FUNCTION webhook."_order_lock"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_order_lock_wrapper';
CREATE FUNCTION webhook."_on_dropped"(
	"tables" oid[],
	"what" TEXT[],
	"trigger_tables" oid[]
) RETURNS void
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'on_dropped_wrapper';
CREATE FUNCTION webhook."_sync_all_triggers"() RETURNS bigint
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sync_all_triggers_wrapper';

DROP EVENT TRIGGER webhook_on_sql_drop;
DROP FUNCTION webhook._on_sql_drop();
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
-- any CREATE TABLE ... PARTITION OF are covered this way. In C, because it must see the
-- statement: any other ALTER TABLE is left alone (see src/triggers/events.rs).
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

-- How many delivery workers each database has, for the monitoring query (src/worker_count.rs).
CREATE FUNCTION webhook."_worker_count"() RETURNS INT
STRICT STABLE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_count_sql_wrapper';

-- How many callback runners of the database are stuck in a call, for the monitoring query
-- (src/stuck_runners.rs).
CREATE FUNCTION webhook."_stuck_runners"() RETURNS INT
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'stuck_runners_sql_wrapper';

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

-- subscribe() gains batch_size and batch_wait, passed to _subscribe in an options object (so
-- later settings do not change _subscribe's signature); absurd intervals reach the range
-- checks instead of failing a cast.
DROP FUNCTION webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid);
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
	"callback" oid,
	"options" jsonb
) RETURNS INT
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'subscribe_with_options_wrapper';
COMMENT ON FUNCTION webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb) IS
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
REVOKE ALL ON FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure, integer, interval, text[], text, text, text, text, jsonb), webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook.subscribe(text, regclass, text, text[], text, jsonb, interval, integer, interval[], text, text, text[], text[], boolean, boolean, integer, double precision, regprocedure, integer, interval, text[], text, text, text, text, jsonb), webhook._subscribe(text, oid, text, text[], text, jsonb, bigint, integer, bigint[], text, text, text[], text[], boolean, boolean, integer, double precision, oid, jsonb) TO webhook_admin;

CREATE OR REPLACE FUNCTION webhook.rotate_secret(
    name    text,
    secret  text     DEFAULT NULL,          -- whsec_...; NULL generates one
    overlap interval DEFAULT '24 hours'     -- how long the old secret also signs
) RETURNS text
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._rotate_secret(name, secret,
              (CASE WHEN overlap IS NOT NULL
                    THEN LEAST(GREATEST(extract(epoch FROM overlap) * 1000, -1e15), 1e15) END)::bigint) $$;

-- Receivers that demand authentication: a subscription's TLS client certificate and its OAuth
-- 2.0 client credentials are changed with these.
CREATE FUNCTION webhook."_set_client_certificate"(
	"name" TEXT,
	"client_cert" TEXT,
	"client_key" TEXT
) RETURNS bool
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_client_certificate_wrapper';
CREATE FUNCTION webhook."_set_auth"(
	"name" TEXT,
	"auth" jsonb
) RETURNS bool
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_auth_wrapper';
CREATE FUNCTION webhook."_set_owner"(
	"name" TEXT,
	"new_owner" oid
) RETURNS bool
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_owner_wrapper';
CREATE FUNCTION webhook.set_owner(name text, new_owner regrole) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_owner(name, new_owner::pg_catalog.oid) $$;
COMMENT ON FUNCTION webhook.set_owner(text, regrole) IS
$$Hand a subscription whose owner's role was dropped to another role (superusers only): its filter, payload and callback then run as that role, and the worker checks that role's access to the table; webhook.resume() then sends the parked events.
The new owner must pass every check subscribe() makes of a subscriber and own the callback (or a superuser must). A subscription whose owner still exists, or that has SQL of its former owner's (a filter or payload), does not change hands: the new owner subscribes again. Returns true.$$;
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
CREATE FUNCTION webhook.set_auth(name text, auth jsonb) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhook._set_auth(name, auth) $$;
COMMENT ON FUNCTION webhook.set_auth(text, jsonb) IS
$$Replace (or with NULL remove) a subscription's OAuth 2.0 client credentials, {"type": "oauth2", "token_url", "client_id", "client_secret", "scope"}.
Checked like subscribe()'s. The cached token is dropped: the next request fetches one with the new credentials. Returns true.$$;
COMMENT ON FUNCTION webhook._set_client_certificate(text, text, text) IS 'Internal: implements webhook.set_client_certificate().';
COMMENT ON FUNCTION webhook._set_auth(text, jsonb) IS 'Internal: implements webhook.set_auth().';
COMMENT ON FUNCTION webhook._set_owner(text, oid) IS 'Internal: implements webhook.set_owner().';
REVOKE ALL ON FUNCTION
    webhook.set_client_certificate(text, text, text), webhook._set_client_certificate(text, text, text),
    webhook.set_auth(text, jsonb), webhook._set_auth(text, jsonb),
    webhook.set_owner(text, regrole), webhook._set_owner(text, oid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
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
COMMENT ON COLUMN webhook.subscriptions.uid IS
    'Random id that prefixes every webhook-id of this subscription (msg_<uid>_<event id>, with .<timeline> after it on every WAL timeline but the first).';
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
COMMENT ON COLUMN webhook.attempts.error IS 'Transport failure (connect, DNS, TLS, timeout, refused destination); NULL when answered.';
-- Running totals per subscription, for monitoring (counters that only grow, unlike
-- the history that retention purges): events delivered, events dead, and attempts that failed
-- (those followed by a retry and the last one of a dead event). Each delivery worker adds to its
-- own row in the transaction that records the outcomes, so workers never wait on one another.
CREATE TABLE webhook._delivery_totals (
    subscription_id integer NOT NULL,
    worker          integer NOT NULL,
    delivered       bigint NOT NULL DEFAULT 0,
    dead            bigint NOT NULL DEFAULT 0,
    failed_attempts bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription_id, worker)
) WITH (fillfactor = 50);
REVOKE ALL ON webhook._delivery_totals FROM PUBLIC;
-- Subscriptions made before start from the history still kept.
INSERT INTO webhook._delivery_totals (subscription_id, worker, delivered, dead, failed_attempts)
SELECT h.subscription_id, 0, sum(h.delivered), sum(h.dead), sum(h.failed)
  FROM (SELECT a.subscription_id,
               count(*) FILTER (WHERE a.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE a.status = 'dead') AS dead,
               count(*) FILTER (WHERE a.status = 'dead') AS failed
          FROM webhook._event_archive a
         GROUP BY a.subscription_id
        UNION ALL
        SELECT t.subscription_id, 0, 0, count(*)
          FROM webhook._attempts t
         WHERE t.outcome <> 'delivered'
         GROUP BY t.subscription_id) h
 GROUP BY h.subscription_id;

-- The stats view gains those totals as counters.
CREATE OR REPLACE VIEW webhook.subscription_stats WITH (security_barrier) AS
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
GRANT USAGE ON SCHEMA webhook TO pg_monitor;
GRANT SELECT ON webhook.subscription_stats TO pg_monitor;
-- subscription_stats calls it as the querying role, and monitoring roles read that view.
GRANT EXECUTE ON FUNCTION webhook._in_flight() TO pg_monitor;
-- The exporter's query lists each delivery worker by it, to report whether it runs.
GRANT EXECUTE ON FUNCTION webhook._worker_count() TO pg_monitor;
COMMENT ON FUNCTION webhook._worker_count() IS 'Internal: how many delivery workers each database has (pg_webhook.workers, or the count its default resolved to from the CPUs), for monitoring.';
-- The exporter's query reports stuck callback runners with it.
GRANT EXECUTE ON FUNCTION webhook._stuck_runners() TO pg_monitor;
COMMENT ON FUNCTION webhook._stuck_runners() IS 'Internal: how many callback runners of this database are stuck in a call the watchdog cannot end (shared memory), for monitoring.';
-- It shows each caller only the subscriptions they see in that view.
COMMENT ON FUNCTION webhook._in_flight() IS 'Internal: requests the delivery workers have in flight (shared memory), per subscription the caller sees in webhook.subscription_stats.';
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

COMMENT ON VIEW webhook.events IS
    'Every captured row change: pending (queued for a first or further attempt), parked (its subscription is paused, disabled or may not read its table), delivered, or dead (kept after its last failed attempt).';

-- Every subscription's triggers in the 0.3.0 form (each live one is then noted in
-- _triggers_made): the subscription id as the only argument
-- (owner, filter and columns are read from its row), on every partition, and an order-lock
-- trigger for ordered subscriptions.
SELECT webhook._sync_all_triggers();

-- 0.3.0 no longer lets a partition be subscribed on its own: a statement through its parent
-- never fires its triggers. Existing ones keep working as before, and are named here.
DO $$
DECLARE
    names text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (on %s)', s.name, s.target), ', ')
      INTO names
      FROM webhook._subscriptions s
     WHERE s.status <> 'unsubscribed'
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = s.target::oid);
    IF names IS NOT NULL THEN
        RAISE WARNING 'these webhook subscriptions watch a partition, and miss what is written through its parent: %', names
            USING HINT = 'Subscribe the partitioned table instead (with a filter if only some rows matter), then unsubscribe these.';
    END IF;
END
$$;

-- 0.3.0 asks for the TRIGGER privilege to subscribe (a subscription is a trigger). Like
-- PostgreSQL's own triggers, existing subscriptions keep working after the privilege is gone;
-- the ones whose owner would not be allowed to make them today are named here.
DO $$
DECLARE
    names text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (owner %s, on %s)', s.name, s.owner, s.target), ', ')
      INTO names
      FROM webhook._subscriptions s
      JOIN pg_catalog.pg_class c ON c.oid = s.target::oid
     WHERE s.status <> 'unsubscribed'
       AND NOT pg_catalog.has_table_privilege(s.owner::oid, c.oid, 'TRIGGER');
    IF names IS NOT NULL THEN
        RAISE WARNING 'the owners of these webhook subscriptions lack the TRIGGER privilege on their tables, which subscribing needs since 0.3.0: %', names
            USING HINT = 'GRANT TRIGGER on the table to the owner, or unsubscribe and let someone who has it subscribe again.';
    END IF;
END
$$;

-- Backfills (webhook.backfill(); their table is made above).
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
CREATE FUNCTION webhook."_backfill"(
	"name" TEXT,
	"filter" TEXT
) RETURNS bigint
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'backfill_impl_wrapper';
CREATE FUNCTION webhook."_cancel_backfill"(
	"name" TEXT
) RETURNS bool
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'cancel_backfill_impl_wrapper';

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

-- API: Private. Batches of new events out (sent, their outcome not yet recorded), one row each:
-- the events it carries, in the order sent. A delivery worker writes its batches here before
-- it sends them and removes each in the transaction that records its outcome; a worker that
-- starts takes the rows its share's previous worker left (it died, or the server stopped,
-- with them out), and those of a server that ran another count of workers, and puts their
-- events back as that batch (the queue's `batch` column), so they go out again as it, under
-- its webhook-id. A retried batch is on its events already.
CREATE TABLE webhook._batches_out (
    subscription_id integer NOT NULL,
    -- The batch (its first event's id), as in the queue's `batch` column.
    batch           bigint NOT NULL,
    -- The delivery worker that sent it (its share of the events, 0-based), and how many
    -- shared them then (pg_webhook.workers as the server resolved it).
    worker          integer NOT NULL,
    workers         integer NOT NULL,
    -- The events' keys in the queue: txid (as a number) and id.
    txids           bigint[] NOT NULL,
    ids             bigint[] NOT NULL,
    PRIMARY KEY (subscription_id, batch)
);
ALTER TABLE webhook._batches_out SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);
REVOKE ALL ON webhook._batches_out FROM PUBLIC;

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
-- (Values written before stay where they are until they change.)
