-- pg_webhook: tables and views. Everything lives in schema "webhook" (the control file's
-- schema). Base tables start with "_" and are private: users read the views, which is where
-- visibility rules apply, and change state only through the functions.

-- Only in a UTF8 database. Webhooks carry JSON, which is UTF-8, and the worker reads the
-- queue's text (row images, names) into Rust as UTF-8: in a database of another encoding, text
-- outside ASCII (a 'é' in a LATIN1 row, a byte over 127 in a SQL_ASCII one) cannot be read so,
-- and the first such event would stop every delivery of the database.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'pg_webhook needs a database encoded in UTF8, and database "%" is encoded in %',
                pg_catalog.current_database(), pg_catalog.getdatabaseencoding()
            USING HINT = 'Webhooks carry JSON, which is UTF-8. Make a UTF8 database (CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0), move the data there (pg_dump and pg_restore convert it), and create pg_webhook in it.',
                  ERRCODE = 'feature_not_supported';
    END IF;
END $$;

-- The schema must be pg_webhook's alone, and only superusers may add to it. CREATE EXTENSION
-- makes it when it is missing, but uses one that is there already: one a non-superuser made
-- (with CREATE on the database), gave CREATE on, or that outlived a DROP EXTENSION with a role
-- since demoted, lets that role add functions beside pg_webhook's — an overload of
-- webhook.subscribe(text, text, text) would be the one chosen for a call with plain literals,
-- and run as whoever made it, a superuser too; and an object left in it could shadow one of
-- ours the same way. Default privileges (of the schema, or of the installing role) would grant
-- rights on the private tables, secrets included, and a publication of the schema would send
-- them to its subscribers.
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
            USING HINT = 'Drop the schema (DROP SCHEMA webhook), then create the extension again.',
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
            USING HINT = 'Drop the schema (DROP SCHEMA webhook), then create the extension again.',
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
            USING HINT = 'Create the extension as a superuser without such default privileges, or change them (ALTER DEFAULT PRIVILEGES ... REVOKE), then create it again.',
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
            USING HINT = 'Take it out (ALTER PUBLICATION ... DROP TABLES IN SCHEMA webhook), then create the extension again.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT o.what INTO found
      FROM (SELECT pg_catalog.format('relation webhook.%I', c.relname) AS what, c.relnamespace AS ns
              FROM pg_catalog.pg_class c
            UNION ALL
            SELECT pg_catalog.format('function webhook.%I(%s)', p.proname,
                                     pg_catalog.pg_get_function_identity_arguments(p.oid)), p.pronamespace
              FROM pg_catalog.pg_proc p
            UNION ALL
            SELECT pg_catalog.format('type webhook.%I', t.typname), t.typnamespace
              FROM pg_catalog.pg_type t
            UNION ALL
            SELECT pg_catalog.format('operator webhook.%s', o.oprname), o.oprnamespace
              FROM pg_catalog.pg_operator o
            UNION ALL
            SELECT pg_catalog.format('collation webhook.%I', l.collname), l.collnamespace FROM pg_catalog.pg_collation l
            UNION ALL
            SELECT pg_catalog.format('conversion webhook.%I', v.conname), v.connamespace FROM pg_catalog.pg_conversion v
            UNION ALL
            SELECT pg_catalog.format('operator class webhook.%I', oc.opcname), oc.opcnamespace FROM pg_catalog.pg_opclass oc
            UNION ALL
            SELECT pg_catalog.format('operator family webhook.%I', f.opfname), f.opfnamespace FROM pg_catalog.pg_opfamily f
            UNION ALL
            SELECT pg_catalog.format('text search configuration webhook.%I', tc.cfgname), tc.cfgnamespace
              FROM pg_catalog.pg_ts_config tc
            UNION ALL
            SELECT pg_catalog.format('text search dictionary webhook.%I', td.dictname), td.dictnamespace
              FROM pg_catalog.pg_ts_dict td
            UNION ALL
            SELECT pg_catalog.format('statistics object webhook.%I', se.stxname), se.stxnamespace
              FROM pg_catalog.pg_statistic_ext se) o
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.ns
     WHERE n.nspname OPERATOR(pg_catalog.=) 'webhook'
     LIMIT 1;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'schema webhook is not empty (it holds %), and pg_webhook needs it to itself', found
            USING HINT = 'Move or drop what is in schema webhook, then create the extension again.',
                  ERRCODE = 'duplicate_schema';
    END IF;
END
$$;

-- API: Private. Which copy of a database this is, as pg_webhook tells them apart: a random
-- value made with the extension, with the database's OID (webhook._instance_id()). Not dumped
-- (not a config table), so a restore of a dump gets a new one with its CREATE EXTENSION (or,
-- into a database made from a template that has the extension, another OID), and so does a
-- CREATE DATABASE ... TEMPLATE copy; a physical standby, a promoted one and pg_upgrade
-- (which keeps database OIDs) keep the files and the OID, and so the value. A subscription row notes the value it was made under
-- (`instance`); a worker that finds another gives the subscription a new uid before sending
-- anything (sql/worker/foreign_uids.sql): a restored copy running beside its original (a
-- staging database) then never sends webhook-ids the original sends.
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
CREATE FUNCTION webhook._callback_signature(f oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.format('%I.%I(pg_catalog.jsonb)', n.nspname, p.proname)
         FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
        WHERE p.oid OPERATOR(pg_catalog.=) f $$;
REVOKE ALL ON FUNCTION webhook._callback_signature(oid) FROM PUBLIC;
COMMENT ON FUNCTION webhook._callback_signature(oid) IS
    'Internal: a callback function''s signature, schema-qualified, as a subscription keeps it (NULL: no such function).';

-- API: Private. One row per subscription. Dumped by pg_dump (extension config table) so
-- subscriptions survive dump/restore; ids are kept, and triggers reference them.
CREATE SEQUENCE webhook._subscription_id_seq AS integer;
CREATE TABLE webhook._subscriptions (
    id              integer PRIMARY KEY DEFAULT nextval('webhook._subscription_id_seq'),
    uid             text NOT NULL UNIQUE,          -- random; prefixes every webhook-id
    name            text NOT NULL,
    target          regclass NOT NULL,             -- the watched table
    url             text NOT NULL,
    events          text[] NOT NULL,               -- lower-case: insert, update, delete
    secret          text NOT NULL,                 -- whsec_...
    headers         jsonb NOT NULL DEFAULT '{}',
    timeout         interval,                      -- NULL: pg_webhook.default_timeout
    max_attempts    integer NOT NULL,
    retry_schedule  interval[],                    -- NULL: the default schedule
    format          text NOT NULL DEFAULT 'database',  -- database, standard, cloudevents
    filter          text,                          -- condition over NEW / OLD
    columns         text[],                        -- send only these columns
    exclude_columns text[],                        -- or all but these
    skip_unchanged  boolean NOT NULL DEFAULT false, -- drop UPDATEs of unsent columns only
    status          text NOT NULL DEFAULT 'active',
    status_reason   text,
    owner           regrole NOT NULL,
    trigger_name    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- During a secret rotation, the old secret keeps signing until it expires.
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    -- Since when every attempt has failed (NULL after a success); drives auto-disable.
    failing_since   timestamptz,
    -- Added in 0.2.0 (ALTER EXTENSION appends columns, so new ones go last here too).
    -- One event at a time, in commit order: writers of the table serialize on the subscription.
    ordered         boolean NOT NULL DEFAULT false,
    max_in_flight   integer,                       -- concurrent requests; NULL: no own limit
    rate_limit      double precision,              -- events per second; NULL: no limit
    -- Run after each success and each death: the function's signature (schema.name(jsonb)); the
    -- function itself is callback_oid, below. Not a regprocedure: pg_upgrade refuses a table
    -- with one, as it keeps the table's rows but not the functions' OIDs.
    callback        text,
    -- Added in 0.3.0. Events per request (1: each alone, in its plain body) and how long a
    -- partial batch of new events waits for more.
    batch_size      integer NOT NULL DEFAULT 1,
    batch_wait      interval NOT NULL DEFAULT '0',
    -- Columns whose values order events: equal keys one at a time in commit order, different
    -- keys in parallel. NULL: no per-key order.
    order_key       text[],
    -- 'transaction': one request per committed transaction (in parts if it is too large).
    group_by        text,
    -- An expression over NEW / OLD whose jsonb value is sent as the event's record.
    payload         text,
    -- Receivers that demand authentication: a TLS client certificate chain and its private key
    -- (PEM), and OAuth 2.0 client credentials ({"type": "oauth2", "token_url", "client_id",
    -- "client_secret", "scope"}). The key and the client secret are shown like the secret.
    client_cert     text,
    client_key      text,
    auth            jsonb,
    -- Disabled by the worker because its owner could no longer read the table: its held
    -- events never go out, nor show their rows to the owner, once the table is gone (there is
    -- no ACL left to ask then). Cleared by webhook.resume().
    read_denied     boolean NOT NULL DEFAULT false,
    -- Added in 0.3.0. The webhook._instance the uid was made (or renewed) under; NULL (a row
    -- restored from an older dump) counts as another copy's.
    instance        text,
    -- Added in 0.3.0. Set by the worker once it finds the owner's role gone. The owner column
    -- keeps the dropped role's OID, which a dump writes as a number and a restore into another
    -- cluster reads as whichever role has that OID there: this flag, dumped with it, keeps the
    -- subscription an orphan — its SQL not run, its events held, its callbacks not called —
    -- until webhook.set_owner() hands it over.
    owner_dropped   boolean NOT NULL DEFAULT false,
    -- Added in 0.3.0. The callback's function by OID, valid where it was read: in the copy of
    -- the database and the cluster callback_bound_in names (webhook._binding_key()). pg_upgrade
    -- keeps these rows but gives functions new OIDs, and a restore brings another database's:
    -- then the worker binds the callback again by its signature (and calls nothing until then).
    callback_oid      oid,
    callback_bound_in text,
    -- Added in 0.3.0. Who owns that function (NULL: not known, in a dump made before 0.3.0). A
    -- callback is bound again only to a function of the same owner (or a superuser's): another
    -- role that may create functions in its schema, making one of its signature once it is
    -- dropped or renamed, would have its code run as the subscription's owner.
    callback_owner    regrole,
    CONSTRAINT client_cert_with_key CHECK ((client_cert IS NULL) = (client_key IS NULL)),
    CONSTRAINT group_by_is_known CHECK (group_by IN ('transaction')),
    CONSTRAINT batch_size_is_in_range CHECK (batch_size BETWEEN 1 AND 1000),
    CONSTRAINT batch_wait_is_in_range CHECK (batch_wait BETWEEN '0' AND '1 minute'),
    CONSTRAINT max_in_flight_is_positive CHECK (max_in_flight > 0),
    CONSTRAINT rate_limit_is_positive CHECK (rate_limit > 0),
    CONSTRAINT status_is_known
        CHECK (status IN ('active', 'paused', 'disabled', 'unsubscribed')),
    CONSTRAINT format_is_known CHECK (format IN ('database', 'standard', 'cloudevents'))
);
-- A name is taken while its subscription is live; an unsubscribed one keeps its row (and its
-- queued events keep being delivered) but frees the name.
CREATE UNIQUE INDEX subscriptions_live_name ON webhook._subscriptions (name)
    WHERE status <> 'unsubscribed';
SELECT pg_catalog.pg_extension_config_dump('webhook._subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('webhook._subscription_id_seq', '');

-- Event ids also form webhook-ids, so the sequence is dumped too: after a restore, new events
-- never reuse an id a receiver has already seen (and de-duplicated on). The capture trigger
-- takes ids in blocks of 1024 (one nextval per batch of rows), so ids are unique and increase
-- in capture order but are not dense.
CREATE SEQUENCE webhook._event_id_seq INCREMENT BY 1024;
SELECT pg_catalog.pg_extension_config_dump('webhook._event_id_seq', '');

-- API: Private. Events waiting for (another) delivery attempt. Written by the capture trigger
-- in the writer's transaction, so an event exists exactly when its change committed. Kept
-- small: a finished event moves to _event_archive in the same transaction that records it.
--
-- New events (next_attempt_at IS NULL) are found through the key (txid, id): the worker
-- remembers how far it has read, bounded below by the oldest transaction that could still
-- commit more, so it never re-walks the dead index entries that delivered events leave behind.
-- Events waiting for a retry carry next_attempt_at and are found through their own (small)
-- index. Outcomes are recorded by the key: where the claim found the row (its ctid) only if
-- the row there still has the event's key, by looking the key up otherwise (VACUUM FULL,
-- CLUSTER, pg_repack and updates move rows); the key is also the replica identity a FOR ALL
-- TABLES publication needs.
CREATE TABLE webhook._event_queue (
    id              bigint NOT NULL,
    txid            xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    subscription_id integer NOT NULL,
    op              text NOT NULL,                 -- INSERT, UPDATE, DELETE
    table_schema    text NOT NULL,
    table_name      text NOT NULL,
    record          jsonb,
    old_record      jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    -- Attempts made before the current series (a replay starts a new series): the retry
    -- schedule counts from here, attempt numbers keep growing.
    series_start    integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,                   -- NULL: new, due now; infinity: parked
    last_error      text,
    -- Of an ordered subscription: delivered one at a time by id, which the capture trigger
    -- takes under the subscription's lock, so id order is commit order.
    ordered         boolean NOT NULL DEFAULT false,
    -- Added in 0.3.0. Size of record and old_record (uncompressed): a claim stops at a byte
    -- budget, so a backlog of large rows cannot make a worker load them all at once.
    payload_bytes   integer NOT NULL DEFAULT 0,
    -- The batch the event was last sent in (named after its first event): a retry goes out in
    -- the same batch, with the same webhook-id. NULL: not sent in a batch yet.
    batch           bigint,
    -- Of an ordered event: a hash of its order key's values (0 for `ordered => true`, one key
    -- for the whole subscription). NULL for unordered events.
    order_key       bigint,
    -- Of a subscription grouped by transaction: which part of its transaction's request the
    -- event goes in (1-based; NULL until the transaction is cut into parts), and how many
    -- events the transaction has for the subscription.
    part            integer,
    tx_events       integer,
    -- The WAL timeline the event was captured on, and the one its transaction (txid) ran on
    -- (a replay's, for a replayed event). A failover or a point-in-time recovery starts a new
    -- timeline, which may hand out again the event and transaction ids the abandoned one had
    -- sent: webhook-ids name the timeline when it is not the first (see message_id in
    -- src/core/payload.rs).
    timeline        integer NOT NULL DEFAULT 1,
    tx_timeline     integer NOT NULL DEFAULT 1,
    CONSTRAINT event_queue_key PRIMARY KEY (txid, id)
);
CREATE INDEX event_queue_scheduled ON webhook._event_queue (next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
-- Each subscription's due events, for the claim that reads past a subscription holding its
-- share (claim_scheduled_others.sql). Only events with a due time: capture never writes it.
CREATE INDEX event_queue_due_by_subscription
    ON webhook._event_queue (subscription_id, next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;
-- The heads of each ordered subscription's queue and of each of its order keys; unordered
-- writes never touch them.
CREATE INDEX event_queue_ordered ON webhook._event_queue (subscription_id, id) WHERE ordered;
CREATE INDEX event_queue_order_key ON webhook._event_queue (subscription_id, order_key, id)
    WHERE ordered;
-- Vacuum often (the table churns) and never truncate it: truncating takes an ACCESS EXCLUSIVE
-- lock that stalls every writer of a subscribed table, and the freed space is reused anyway.
ALTER TABLE webhook._event_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);

-- API: Private. Events that are finished: delivered, or dead after their last attempt. The last
-- attempt's details live on the row itself (final_*), so finishing an event is one insert.
CREATE TABLE webhook._event_archive (
    id                     bigint PRIMARY KEY,
    subscription_id        integer NOT NULL,
    op                     text NOT NULL,
    table_schema           text NOT NULL,
    table_name             text NOT NULL,
    record                 jsonb,
    old_record             jsonb,
    created_at             timestamptz NOT NULL,
    attempts               integer NOT NULL,
    series_start           integer NOT NULL DEFAULT 0,
    last_error             text,
    status                 text NOT NULL,
    finished_at            timestamptz NOT NULL DEFAULT now(),
    final_started_at       timestamptz,
    final_duration_ms      double precision,
    final_status_code      integer,
    final_response_excerpt text,
    final_error            text,
    CONSTRAINT status_is_final CHECK (status IN ('delivered', 'dead')),
    -- Why the subscription's callback failed for this event (NULL: it ran, or there is none).
    callback_error         text,
    -- Added in 0.3.0: the size of the row images, carried back into the queue by a replay.
    payload_bytes          integer NOT NULL DEFAULT 0,
    -- Its order key (see the queue), so a replay keeps its place among its key's events.
    order_key              bigint,
    -- The timeline it was captured on (see the queue), part of its webhook-id.
    timeline               integer NOT NULL DEFAULT 1
);
-- Retention purges and the stats view read recent history by time.
CREATE INDEX event_archive_finished ON webhook._event_archive (finished_at);

-- API: Private. Every attempt that was not an event's last (those are on the archive row).
CREATE TABLE webhook._attempts (
    event_id         bigint NOT NULL,
    attempt          integer NOT NULL,
    subscription_id  integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    status_code      integer,
    response_excerpt text,
    error            text,
    outcome          text NOT NULL,
    PRIMARY KEY (event_id, attempt),
    CONSTRAINT outcome_is_known CHECK (outcome IN ('delivered', 'retry', 'dead'))
);
CREATE INDEX attempts_started ON webhook._attempts (started_at);

-- API: Private. Running totals per subscription, for monitoring (counters that only grow, unlike
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

-- API: Private. The subscriptions whose triggers pg_webhook made, or saw complete, in this
-- database. Not dumped with the subscriptions: after a restore it is empty, so the worker's
-- trigger check does not take a restored subscription whose triggers pg_restore has yet to
-- create (they come after the table data) for one whose trigger was dropped by hand.
CREATE TABLE webhook._triggers_made (subscription_id integer PRIMARY KEY);

-- API: Private. Finished events whose subscription's callback has yet to run. Written in the
-- transaction that records the outcome, removed in the one that runs the callback: a callback
-- is never lost, and its effects commit together with its removal from here.
CREATE TABLE webhook._callback_queue (
    event_id         bigint PRIMARY KEY,
    subscription_id  integer NOT NULL,
    response_headers jsonb,
    -- How many times a runner started the callback (one that died mid-call leaves it counted).
    starts           integer NOT NULL DEFAULT 0
);

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
-- The callback runner takes turns between subscriptions (pending_callbacks.sql): it finds
-- each one's oldest callbacks through this index.
CREATE INDEX callback_queue_subscription ON webhook._callback_queue (subscription_id, event_id);
ALTER TABLE webhook._callback_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_truncate = false
);

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
  FROM webhook._subscriptions s
  JOIN webhook._visible_subscriptions v ON v.id = s.id;

-- API: Public. Queued and finished events in one place; status is pending, delivered or dead.
CREATE VIEW webhook.events WITH (security_barrier) AS
SELECT q.id, q.subscription_id, q.op, q.table_schema, q.table_name,
       CASE WHEN v.reads_rows THEN q.record END AS record,
       CASE WHEN v.reads_rows THEN q.old_record END AS old_record,
       CASE WHEN q.next_attempt_at = 'infinity' THEN 'parked' ELSE 'pending' END AS status,
       q.attempts,
       COALESCE(q.next_attempt_at, q.created_at) AS next_attempt_at, q.last_error, q.created_at,
       NULL::timestamptz AS finished_at, NULL::text AS callback_error, q.timeline
  FROM webhook._event_queue q
  JOIN webhook._visible_subscriptions v ON v.id = q.subscription_id
UNION ALL
SELECT a.id, a.subscription_id, a.op, a.table_schema, a.table_name,
       CASE WHEN v.reads_rows THEN a.record END,
       CASE WHEN v.reads_rows THEN a.old_record END,
       a.status, a.attempts, NULL::timestamptz, a.last_error, a.created_at, a.finished_at,
       CASE WHEN v.manages THEN a.callback_error END, a.timeline
  FROM webhook._event_archive a
  JOIN webhook._visible_subscriptions v ON v.id = a.subscription_id;

-- API: Public.
CREATE VIEW webhook.attempts WITH (security_barrier) AS
SELECT t.event_id, t.attempt, t.subscription_id, t.started_at, t.duration_ms, t.status_code,
       t.response_excerpt, t.error, t.outcome
  FROM webhook._attempts t
 WHERE t.subscription_id IN (SELECT v.id FROM webhook._visible_subscriptions v)
UNION ALL
SELECT a.id, a.attempts, a.subscription_id, a.final_started_at, a.final_duration_ms,
       a.final_status_code, a.final_response_excerpt, a.final_error, a.status
  FROM webhook._event_archive a
 WHERE a.final_started_at IS NOT NULL
   AND a.subscription_id IN (SELECT v.id FROM webhook._visible_subscriptions v);

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
SELECT b.id, s.name AS subscription, b.subscription_id, b.state, b.rows_sent, b.rows_estimated,
       b.filter, CASE WHEN v.reads_rows THEN b.last_key END AS last_key, b.started_by,
       b.started_at, b.finished_at, CASE WHEN v.manages THEN b.last_error END AS last_error
  FROM webhook._backfills b
  JOIN webhook._subscriptions s ON s.id = b.subscription_id
  JOIN webhook._visible_subscriptions v ON v.id = b.subscription_id;
GRANT SELECT ON webhook.backfills TO webhook_admin;
COMMENT ON VIEW webhook.backfills IS
    'Each webhook.backfill(): its subscription, state (running, done, canceled, failed), rows sent so far against the planner''s estimate, when it started and finished, and why it failed.';
