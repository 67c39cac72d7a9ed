//! Bad input gets a clear error and changes nothing; the privilege model holds for ordinary
//! roles; the extension's functions cannot be hijacked through search_path.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{error_of, subscribe, WAIT};

/// Everything a bad call must leave alone.
fn state(db: &mut Client) -> String {
    db.query_one(
        "SELECT (SELECT string_agg(format('%s %s %s %s %s', id, name, status, url, secret), ';' ORDER BY id)
                   FROM webhook._subscriptions)
             || ' / ' || (SELECT count(*) FROM webhook._event_queue)
             || ' / ' || (SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
                           WHERE tgname LIKE 'pg_webhook_%')
             || ' / ' || (SELECT string_agg(name || '=' || setting, ',' ORDER BY name)
                            FROM pg_settings WHERE name LIKE 'pg_webhook.%')",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    // A receiver that never answers: the existing event stays queued throughout.
    let rx = Receiver::with(|_, _| support::receiver::Reply::Hang(Duration::from_secs(600)));
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE VIEW orders_view AS SELECT * FROM orders;
         CREATE MATERIALIZED VIEW orders_mat AS SELECT * FROM orders;
         CREATE SEQUENCE some_seq;
         CREATE TYPE some_type AS (a int);
         CREATE SCHEMA other; CREATE TABLE other.t (id int);",
    )
    .unwrap();
    subscribe(
        &mut db,
        "taken",
        "orders",
        &rx.url("/x"),
        ", timeout => '5 minutes'",
    );
    db.batch_execute("INSERT INTO orders VALUES (1, 'queued')")
        .unwrap();
    let before = state(&mut db);

    let sub = |args: &str| format!("SELECT webhook.subscribe({args})");
    let ok_args = "'a', 'orders', 'https://example.com/h'";
    let with = |extra: &str| sub(&format!("{ok_args}, {extra}"));
    let cases: Vec<(String, &str)> = vec![
        // names
        (
            sub("NULL, 'orders', 'https://example.com/'"),
            "name must not be NULL",
        ),
        (
            sub("'', 'orders', 'https://example.com/'"),
            "name must not be empty",
        ),
        (
            sub("'   ', 'orders', 'https://example.com/'"),
            "name must not be empty",
        ),
        (
            sub(&format!(
                "'{}', 'orders', 'https://example.com/'",
                "n".repeat(64)
            )),
            "the limit is 63",
        ),
        (
            sub("E'a\\nb', 'orders', 'https://example.com/'"),
            "control character",
        ),
        (
            sub("'taken', 'orders', 'https://example.com/'"),
            "subscription \"taken\" already exists",
        ),
        // targets
        (
            sub("'a', NULL, 'https://example.com/'"),
            "target must not be NULL",
        ),
        (
            sub("'a', 'nope', 'https://example.com/'"),
            "relation \"nope\" does not exist",
        ),
        (
            sub("'a', 'orders_view', 'https://example.com/'"),
            "is a view",
        ),
        (
            sub("'a', 'orders_mat', 'https://example.com/'"),
            "is a materialized view",
        ),
        (
            sub("'a', 'some_seq', 'https://example.com/'"),
            "is not a table",
        ),
        (
            sub("'a', 'some_type', 'https://example.com/'"),
            "target public.some_type is not a table",
        ),
        (
            sub("'a', 'pg_class', 'https://example.com/'"),
            "is a system catalog",
        ),
        (
            sub("'a', 'information_schema.tables', 'https://example.com/'"),
            "is a system catalog",
        ),
        (
            sub("'a', 'webhook._event_queue', 'https://example.com/'"),
            "pg_webhook's own tables",
        ),
        (
            sub("'a', 'other.nope', 'https://example.com/'"),
            "relation \"other.nope\" does not exist",
        ),
        // urls
        (sub("'a', 'orders', NULL"), "url must not be NULL"),
        (sub("'a', 'orders', ''"), "url is empty"),
        (
            sub("'a', 'orders', '/relative/path'"),
            "not a valid absolute URL",
        ),
        (
            sub("'a', 'orders', 'example.com/hooks'"),
            "not a valid absolute URL",
        ),
        (
            sub("'a', 'orders', 'ftp://example.com/'"),
            "url scheme 'ftp' is not supported",
        ),
        (
            sub("'a', 'orders', 'file:///etc/passwd'"),
            "url scheme 'file' is not supported",
        ),
        (
            sub("'a', 'orders', 'https://exa mple.com/'"),
            "url contains whitespace",
        ),
        (
            sub("'a', 'orders', E'https://example.com/\\r\\nHost: x'"),
            "url contains whitespace",
        ),
        (
            sub("'a', 'orders', E'https://example.com/\\x01'"),
            "control character",
        ),
        (
            sub("'a', 'orders', 'https://user:pw@example.com/'"),
            "user name or password",
        ),
        (
            sub("'a', 'orders', 'https://example.com/#frag'"),
            "#fragment",
        ),
        (sub("'a', 'orders', 'http://'"), "not a valid absolute URL"),
        (
            sub(&format!(
                "'a', 'orders', 'https://example.com/{}'",
                "a".repeat(3000)
            )),
            "the limit is 2048",
        ),
        // events
        (with("events => '{}'"), "events is empty"),
        (
            with("events => '{insert,upsert}'"),
            "unknown event kind 'upsert'",
        ),
        (
            with("events => ARRAY['insert', NULL]"),
            "events contains NULL",
        ),
        (with("events => '{merge}'"), "unknown event kind 'merge'"),
        // secrets
        (with("secret => ''"), "secret is empty"),
        (with("secret => 'whsec_'"), "secret is empty"),
        (with("secret => 'whsec_c2hvcnQ='"), "fewer than the 24"),
        (with("secret => 'whsec_not base64!'"), "not valid base64"),
        (
            with(&format!("secret => 'whsec_{}'", "QUFB".repeat(30))),
            "more than the maximum of 64",
        ),
        // headers
        (with("headers => '[1, 2]'"), "headers must be a JSON object"),
        (with("headers => '\"x\"'"), "not a JSON string"),
        (
            with("headers => '{\"Host\": \"evil\"}'"),
            "header 'host' is set by pg_webhook",
        ),
        (
            with("headers => '{\"webhook-signature\": \"v1,x\"}'"),
            "header 'webhook-signature'",
        ),
        (
            with("headers => '{\"Content-Type\": \"text/plain\"}'"),
            "header 'content-type'",
        ),
        (
            with("headers => '{\"X-A\": \"a\\r\\nInjected: 1\"}'"),
            "line break",
        ),
        (
            with("headers => '{\"bad name\": \"x\"}'"),
            "not a valid HTTP header name",
        ),
        (
            with("headers => '{\"X-N\": 5}'"),
            "must have a string value",
        ),
        // numeric options
        (
            with("timeout => '-1 second'"),
            "timeout of -1000 ms is out of range",
        ),
        (with("timeout => '0'"), "timeout of 0 ms is out of range"),
        (
            with("timeout => '1 hour'"),
            "timeout of 3600000 ms is out of range",
        ),
        (with("max_attempts => 0"), "max_attempts 0 is out of range"),
        (
            with("max_attempts => 101"),
            "max_attempts 101 is out of range",
        ),
        (with("retry_schedule => '{}'"), "retry_schedule is empty"),
        (
            with("retry_schedule => ARRAY['1 second', '-5 seconds']::interval[]"),
            "retry_schedule[2]",
        ),
        (
            with("retry_schedule => ARRAY['30 days']::interval[]"),
            "between 0 and 7 days",
        ),
        (
            with("retry_schedule => ARRAY['1 second', NULL]::interval[]"),
            "retry_schedule[2] is NULL",
        ),
        // unsubscribe
        (
            "SELECT webhook.unsubscribe('nope')".into(),
            "subscription \"nope\" does not exist",
        ),
        (
            "SELECT webhook.unsubscribe(NULL)".into(),
            "name must not be NULL",
        ),
        // configuration, refused when set
        (
            "ALTER SYSTEM SET pg_webhook.max_in_flight = 0".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.max_in_flight = 'many'".into(),
            "invalid value for parameter \"pg_webhook.max_in_flight\"",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.default_timeout = '10 min'".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.batch_size = -1".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.poll_interval = '1 ms'".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.response_excerpt_bytes = -1".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.max_payload_bytes = 10".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.workers = -1".into(),
            "outside the valid range",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.allowed_destinations = '10.0.0.0/40'".into(),
            "invalid allowlist entry '10.0.0.0/40'",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.allowed_destinations = 'http://x'".into(),
            "invalid allowlist entry 'http://x'",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.ca_bundle = '/nonexistent/ca.pem'".into(),
            "cannot read \"/nonexistent/ca.pem\"",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.ca_bundle = '/etc/hostname'".into(),
            "no PEM certificate",
        ),
        (
            "ALTER SYSTEM SET pg_webhook.no_such_setting = 1".into(),
            "unrecognized configuration parameter",
        ),
        (
            "SET pg_webhook.max_in_flight = 10".into(),
            "cannot be changed now",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (sql, want) in &cases {
        let got = error_of(&mut db, sql);
        if !got.contains(want) {
            failures.push(format!("{sql}\n    wanted: {want}\n    got:    {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong messages:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(state(&mut db), before, "a refused call changed something");
    println!("{} bad inputs refused, state unchanged", cases.len());

    // A temporary table vanishes with its session: refused.
    db.batch_execute("CREATE TEMP TABLE scratch (id int)")
        .unwrap();
    let e = error_of(&mut db, &sub("'a', 'scratch', 'https://example.com/'"));
    assert!(e.contains("is a temporary table"), "{e}");
    assert_eq!(state(&mut db), before);

    // Subscribing a table in another schema is supported.
    subscribe(&mut db, "other_schema", "other.t", &rx.url("/o"), "");
}

#[test]
fn a_partitioned_table_is_subscribed_as_a_whole() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TABLE measures (id int, at date, v int) PARTITION BY RANGE (at);
         CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    )
    .unwrap();
    subscribe(&mut db, "measures", "measures", &rx.url("/m"), "");
    db.batch_execute(
        "INSERT INTO measures VALUES (1, '2025-06-01', 10), (2, '2026-06-01', 20);
         UPDATE measures SET at = '2026-02-01' WHERE id = 1;  -- moves between partitions
         DELETE FROM measures WHERE id = 2;",
    )
    .unwrap();
    let got = rx.wait_for(4, WAIT);
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["table"], "measures", "events name the partitioned table");
            b["type"].as_str().unwrap().to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["DELETE", "INSERT", "INSERT", "UPDATE"]);
    let update = got
        .iter()
        .find(|r| r.json()["type"] == "UPDATE")
        .unwrap()
        .json();
    assert_eq!(update["old_record"]["at"], "2025-06-01");
    assert_eq!(update["record"]["at"], "2026-02-01");
}

#[test]
fn an_oversized_payload_dies_with_the_reason_instead_of_being_truncated() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '64kB'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .unwrap();
    subscribe(&mut db, "docs", "docs", &rx.url("/d"), "");
    db.batch_execute("INSERT INTO docs VALUES (1, repeat('x', 100000)), (2, 'small')")
        .unwrap();
    wait_until(WAIT, "both events to finish", || {
        db.query_one(
            "SELECT count(*) FROM webhook.events WHERE status <> 'pending'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 2
    });
    let (status, error): (String, String) = db
        .query_one(
            "SELECT status, last_error FROM webhook.events WHERE record->>'id' = '1'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "dead");
    assert!(
        error.contains("over pg_webhook.max_payload_bytes (65536)"),
        "{error}"
    );
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["record"]["id"], 2);
}

#[test]
fn only_admins_who_can_read_a_table_subscribe_it_and_secrets_stay_with_owners() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    let rx = Receiver::start();
    su.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN; CREATE ROLE mallory LOGIN;
         GRANT webhook_admin TO alice, bob, carol;
         CREATE TABLE payroll (id int PRIMARY KEY, salary int);
         CREATE TABLE public_news (id int PRIMARY KEY, title text);
         GRANT SELECT, TRIGGER ON payroll TO alice;
         GRANT SELECT, TRIGGER ON public_news TO alice, bob;
         GRANT SELECT, INSERT ON payroll TO mallory;",
    )
    .unwrap();
    let mut alice = pg.connect_as("postgres", "alice");
    let mut bob = pg.connect_as("postgres", "bob");
    let mut carol = pg.connect_as("postgres", "carol");
    let mut mallory = pg.connect_as("postgres", "mallory");

    // Not an admin: cannot even call it.
    let e = error_of(
        &mut mallory,
        &format!(
            "SELECT webhook.subscribe('m', 'payroll', '{}')",
            rx.url("/m")
        ),
    );
    assert!(e.contains("permission denied for"), "{e}");
    // An admin who cannot read the table cannot make its rows leave the database.
    let e = error_of(
        &mut bob,
        &format!(
            "SELECT webhook.subscribe('b', 'payroll', '{}')",
            rx.url("/b")
        ),
    );
    assert!(
        e.contains("permission denied to subscribe to public.payroll"),
        "{e}"
    );
    assert!(e.contains("GRANT SELECT ON public.payroll"), "{e}");
    // An admin who can read it may.
    let (_, secret) = subscribe(
        &mut alice,
        "payroll_hook",
        "payroll",
        &rx.url("/p"),
        ", headers => '{\"Authorization\": \"Bearer s3cret\"}'",
    );
    subscribe(&mut alice, "news_hook", "public_news", &rx.url("/n"), "");

    // alice (owner) sees her secret and headers; bob sees only what he may read, without them.
    let seen: Vec<(String, Option<String>, Option<String>)> = bob
        .query(
            "SELECT name, secret, headers::text FROM webhook.subscriptions ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(seen, vec![("news_hook".to_string(), None, None)]);
    let mine: String = alice
        .query_one(
            "SELECT secret FROM webhook.subscriptions WHERE name = 'payroll_hook'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mine, secret);
    // carol reads neither table: she sees no subscription and no event.
    assert_eq!(
        carol
            .query("SELECT * FROM webhook.subscriptions", &[])
            .unwrap()
            .len(),
        0
    );

    // mallory writes payroll: the change is captured although she has no rights on the queue,
    // and she can neither forge events nor read the private tables.
    mallory
        .batch_execute("INSERT INTO payroll VALUES (1, 100)")
        .unwrap();
    rx.wait_for(1, WAIT);
    for sql in [
        "INSERT INTO webhook._event_queue (id, subscription_id, op, table_schema, table_name) VALUES (1, 1, 'INSERT', 'public', 'payroll')",
        "SELECT * FROM webhook._subscriptions",
        "SELECT * FROM webhook._event_archive",
        "UPDATE webhook._subscriptions SET url = 'https://evil.example/'",
        "SELECT * FROM webhook.events",
    ] {
        let e = error_of(&mut mallory, sql);
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    // Events and attempts follow the table's privileges.
    let count = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    wait_until(WAIT, "the payroll event to be delivered", || {
        count(
            &mut alice,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    assert_eq!(count(&mut bob, "SELECT count(*) FROM webhook.events"), 0);
    assert_eq!(count(&mut bob, "SELECT count(*) FROM webhook.attempts"), 0);
    assert_eq!(
        count(&mut alice, "SELECT count(*) FROM webhook.attempts"),
        1
    );

    // Only the owner (or a superuser) may unsubscribe.
    let e = error_of(&mut bob, "SELECT webhook.unsubscribe('news_hook')");
    assert!(e.contains("only its owner or a superuser"), "{e}");
    alice
        .batch_execute("SELECT webhook.unsubscribe('news_hook')")
        .unwrap();
}

#[test]
fn a_hostile_search_path_cannot_hijack_the_extension() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    let rx = Receiver::start();
    su.batch_execute(
        "CREATE ROLE eve LOGIN; GRANT webhook_admin TO eve;
         CREATE SCHEMA evil AUTHORIZATION eve;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT, INSERT, TRIGGER ON t TO eve;",
    )
    .unwrap();
    let mut eve = pg.connect_as("postgres", "eve");
    // Functions and operators that would run as the extension owner if resolved by name.
    eve.batch_execute(
        "CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked to_jsonb'; END $$;
         CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked now'; END $$;
         CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked nextval'; END $$;
         CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked ='; END $$;
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
         SET search_path = evil, pg_catalog, public;",
    )
    .unwrap();
    let (_, secret) = subscribe(&mut eve, "t_hook", "public.t", &rx.url("/t"), "");
    eve.batch_execute("INSERT INTO public.t VALUES (1)")
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    got[0].verify(&secret).unwrap();
    eve.batch_execute("SELECT webhook.unsubscribe('t_hook')")
        .unwrap();
    // The extension's own SQL functions all pin search_path (the C trigger runs no SQL).
    let unpinned: Vec<String> = su
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE p.pronamespace = 'webhook'::regnamespace
                AND l.lanname <> 'c'
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        unpinned.is_empty(),
        "functions without a pinned search_path: {unpinned:?}"
    );
}
