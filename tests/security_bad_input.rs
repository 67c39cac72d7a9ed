//! Bad input gets a clear error and changes nothing: bad calls to the SQL API are refused with
//! the reason, and leave subscriptions, the queue, triggers and settings as they were.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{error_of, subscribe};

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
        (
            with("retry_schedule => array_fill('1 second'::interval, ARRAY[100])"),
            "retry_schedule has 100 delays, and without max_attempts an event gets one attempt \
             more than that, past the limit of 100: give at most 99 delays",
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

/// Names and column names a caller gives were quoted whole in errors: a name of 100 kB went to
/// the client and twice into the server log (the ERROR line and its STATEMENT).
#[test]
fn an_error_quotes_at_most_64_characters_of_what_it_names() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    let url = rx.url("/t");
    for (sql, says) in [
        (
            "SELECT webhook.pause(repeat('x', 100000))".to_string(),
            "does not exist",
        ),
        (
            format!("SELECT webhook.subscribe('k', 't', '{url}', order_key => ARRAY[repeat('y', 100000)])"),
            "does not exist in",
        ),
        (
            format!("SELECT webhook.subscribe('c', 't', '{url}', columns => ARRAY['id', repeat('z', 100000)])"),
            "which is not a column",
        ),
    ] {
        let error = error_of(&mut db, &sql);
        assert!(error.contains(says), "{sql:.60}: {error}");
        assert!(error.contains("… (100000 characters)"), "{error:.300}");
        assert!(error.len() < 600, "{} bytes: {error:.300}", error.len());
    }
}
