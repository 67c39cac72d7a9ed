-- pg_webhook: the schema and the subscriptions. Everything lives in schema "webhook" (the
-- control file's schema). Base tables start with "_" and are private: users read the views
-- (views.sql), which is where visibility rules apply, and change state only through the
-- functions (api.sql). The queue and its history follow in queue.sql.

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
    -- Added in 0.3.0. Random; mixed into the lock buckets of its order keys (advisory locks,
    -- which pg_locks shows every session), so that they tell nothing of the keys written.
    lock_salt         bigint NOT NULL DEFAULT ('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8,
    -- Added in 0.3.0. Set by the worker once an unsubscribed subscription has no event left in
    -- the queue, after which the worker no longer loads it (sql/worker/drained.sql); cleared
    -- should one of its events turn up all the same.
    drained           boolean NOT NULL DEFAULT false,
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
