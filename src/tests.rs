// In-database tests of the SQL API and the capture trigger. Each runs inside a transaction
// that is rolled back, so they check what is written, not what is delivered (the end-to-end
// tests in tests/ do that).

use pgrx::prelude::*;

/// Runs `sql` in a subtransaction and returns the error message it raised, if any.
fn error_of(sql: &str) -> Option<String> {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE q; RETURN NULL;
         EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END $$",
    )
    .expect("helper");
    Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()]).expect("SPI")
}

fn count(sql: &str) -> i64 {
    Spi::get_one::<i64>(sql).expect("SPI").unwrap_or(-1)
}

fn setup_table() {
    Spi::run("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, total numeric(12,2))")
        .expect("create table");
}

#[pg_test]
fn subscribe_returns_the_row_and_installs_a_trigger() {
    setup_table();
    let (secret, events, max_attempts) = Spi::get_three::<String, Vec<String>, i32>(
        "SELECT secret, events, max_attempts
           FROM webhook.subscribe('orders_to_billing', 'orders', 'https://billing.example.com/hooks')",
    )
    .expect("subscribe");
    let secret = secret.expect("a secret");
    assert!(secret.starts_with("whsec_"));
    assert!(pg_webhook_core::signing::Secret::parse(&secret).is_ok());
    assert_eq!(events.expect("events"), vec!["insert", "update", "delete"]);
    assert_eq!(max_attempts, Some(8));
    assert_eq!(
        count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'pg_webhook_%'"),
        3,
        "one statement trigger per event kind"
    );
}

#[pg_test]
fn options_are_stored_as_given() {
    setup_table();
    Spi::run(
        "SELECT webhook.subscribe(
            name => 'opts', target => 'orders', url => 'http://127.0.0.1:9/x',
            events => ARRAY['DELETE', 'insert'],
            secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
            headers => '{\"X-Tenant\": \"acme\"}',
            timeout => '2 seconds', retry_schedule => ARRAY['1 second', '1 minute']::interval[])",
    )
    .expect("subscribe");
    let row = Spi::get_three::<String, String, i32>(
        "SELECT array_to_string(events, ','), secret, max_attempts FROM webhook.subscriptions WHERE name = 'opts'",
    )
    .expect("row");
    assert_eq!(row.0.as_deref(), Some("insert,delete"));
    assert_eq!(row.1.as_deref(), Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_eq!(row.2, Some(3), "one more than the schedule's length");
    assert_eq!(
        count("SELECT extract(epoch FROM timeout)::bigint FROM webhook.subscriptions WHERE name = 'opts'"),
        2
    );
    // Only INSERT and DELETE fire.
    Spi::run("INSERT INTO orders (customer) VALUES ('a'); UPDATE orders SET total = 1; DELETE FROM orders")
        .expect("dml");
    assert_eq!(
        Spi::get_one::<String>("SELECT string_agg(op, ',' ORDER BY id) FROM webhook.events")
            .expect("SPI")
            .as_deref(),
        Some("INSERT,DELETE")
    );
}

#[pg_test]
fn bad_input_is_refused_with_a_message_that_names_the_problem() {
    setup_table();
    Spi::run("CREATE VIEW orders_view AS SELECT * FROM orders").expect("view");
    Spi::run("SELECT webhook.subscribe('taken', 'orders', 'https://example.com/')").expect("first");
    let sub = |args: &str| format!("SELECT webhook.subscribe({args})");
    let cases: &[(String, &str)] = &[
        (sub("'a', 'orders', NULL"), "url must not be NULL"),
        (sub("'a', 'orders', ''"), "url is empty"),
        (sub("'a', 'orders', '/relative'"), "url is not a valid absolute URL"),
        (sub("'a', 'orders', 'ftp://example.com/'"), "url scheme 'ftp' is not supported"),
        (sub("'a', 'orders', 'https://exa mple.com/'"), "url contains whitespace"),
        (sub("'a', 'orders', 'https://u:p@example.com/'"), "url contains a user name or password"),
        (sub("'a', 'nope', 'https://example.com/'"), "relation \"nope\" does not exist"),
        (sub("'a', 'orders_view', 'https://example.com/'"), "is a view, which cannot be subscribed"),
        (sub("'a', 'pg_class', 'https://example.com/'"), "is a system catalog"),
        (sub("'a', 'webhook._event_queue', 'https://example.com/'"), "pg_webhook's own tables"),
        (sub("'taken', 'orders', 'https://example.com/'"), "subscription \"taken\" already exists"),
        (sub("'', 'orders', 'https://example.com/'"), "name must not be empty"),
        (sub(&format!("'{}', 'orders', 'https://example.com/'", "n".repeat(64))), "the limit is 63"),
        (sub("'a', 'orders', 'https://example.com/', events => '{}'"), "events is empty"),
        (sub("'a', 'orders', 'https://example.com/', events => '{upsert}'"), "unknown event kind 'upsert'"),
        (sub("'a', 'orders', 'https://example.com/', secret => 'whsec_c2hvcnQ='"), "fewer than the 24"),
        (sub("'a', 'orders', 'https://example.com/', secret => 'whsec_@@@'"), "not valid base64"),
        (sub("'a', 'orders', 'https://example.com/', headers => '[1]'"), "headers must be a JSON object"),
        (sub("'a', 'orders', 'https://example.com/', headers => '{\"Host\": \"x\"}'"), "header 'host' is set by pg_webhook"),
        (sub("'a', 'orders', 'https://example.com/', headers => '{\"X-A\": \"a\\r\\nB: c\"}'"), "line break"),
        (sub("'a', 'orders', 'https://example.com/', timeout => '-1 second'"), "timeout of -1000 ms is out of range"),
        (sub("'a', 'orders', 'https://example.com/', max_attempts => 0"), "max_attempts 0 is out of range"),
        (sub("'a', 'orders', 'https://example.com/', retry_schedule => '{}'"), "retry_schedule is empty"),
        ("SELECT webhook.unsubscribe('nope')".into(), "subscription \"nope\" does not exist"),
    ];
    for (sql, want) in cases {
        let got = error_of(sql).unwrap_or_else(|| panic!("no error for {sql}"));
        assert!(got.contains(want), "{sql}\n  wanted: {want}\n  got:    {got}");
    }
    assert_eq!(count("SELECT count(*) FROM webhook.subscriptions"), 1, "nothing half-created");
    assert_eq!(
        count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pg_webhook_%'"),
        3
    );
}

#[pg_test]
fn the_trigger_queues_one_event_per_row_with_to_jsonb_of_the_row() {
    setup_table();
    Spi::run("SELECT webhook.subscribe('a', 'orders', 'https://a.example/')").expect("a");
    Spi::run("SELECT webhook.subscribe('b', 'orders', 'https://b.example/', events => '{update}')")
        .expect("b");
    Spi::run("INSERT INTO orders (customer, total) VALUES ('ada', 42.00), ('bob', 1.5)").expect("insert");
    Spi::run("UPDATE orders SET total = total + 1 WHERE customer = 'ada'").expect("update");
    assert_eq!(count("SELECT count(*) FROM webhook.events"), 4, "2 inserts + 1 update for a, 1 update for b");
    let same = Spi::get_one::<bool>(
        "SELECT bool_and(e.record = to_jsonb(o)) FROM webhook.events e JOIN orders o
            ON o.id = (e.record->>'id')::bigint WHERE e.op = 'UPDATE'",
    )
    .expect("SPI");
    assert_eq!(same, Some(true));
    let old_total =
        Spi::get_one::<String>("SELECT old_record->>'total' FROM webhook.events WHERE op = 'UPDATE' LIMIT 1")
            .expect("SPI");
    assert_eq!(old_total.as_deref(), Some("42.00"));
    assert_eq!(
        count("SELECT count(*) FROM webhook.events WHERE status = 'pending' AND table_name = 'orders' AND table_schema = 'public'"),
        4
    );
}

#[pg_test]
fn a_rolled_back_subtransaction_leaves_no_event() {
    setup_table();
    Spi::run("SELECT webhook.subscribe('a', 'orders', 'https://a.example/')").expect("a");
    Spi::run(
        "DO $$ BEGIN
             INSERT INTO orders (customer) VALUES ('kept');
             BEGIN
                 INSERT INTO orders (customer) VALUES ('rolled back');
                 RAISE EXCEPTION 'undo';
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
         END $$",
    )
    .expect("DO");
    assert_eq!(
        Spi::get_one::<String>("SELECT string_agg(record->>'customer', ',') FROM webhook.events")
            .expect("SPI")
            .as_deref(),
        Some("kept")
    );
}

#[pg_test]
fn non_owners_cannot_queue_forged_events_or_read_private_tables() {
    setup_table();
    Spi::run("SELECT webhook.subscribe('a', 'orders', 'https://a.example/')").expect("a");
    // The serial sequence's name is looked up, not assumed: pg_tests run side by side and the
    // name PostgreSQL picks for it depends on what else exists.
    Spi::run(
        "CREATE ROLE writer; GRANT INSERT, SELECT ON orders TO writer;
         DO $$ BEGIN
             EXECUTE format('GRANT USAGE ON SEQUENCE %s TO writer',
                            pg_get_serial_sequence('orders', 'id'));
         END $$;
         GRANT USAGE ON SCHEMA webhook TO writer",
    )
    .expect("role");
    Spi::run("SET LOCAL ROLE writer").expect("set role");
    // Writing the watched table queues an event although the role has no rights on the queue.
    Spi::run("INSERT INTO orders (customer) VALUES ('via trigger')").expect("insert as writer");
    let forged = error_of(
        "INSERT INTO webhook._event_queue (subscription_id, op, table_schema, table_name) VALUES (1, 'INSERT', 'public', 'orders')",
    );
    assert!(forged.unwrap_or_default().contains("permission denied"));
    Spi::run("RESET ROLE").expect("reset");
    assert_eq!(count("SELECT count(*) FROM webhook.events"), 1);
}

#[pg_test]
fn every_function_view_and_view_column_is_documented() {
    let undocumented = Spi::get_one::<String>(
        "SELECT string_agg(p.oid::regprocedure::text, ', ')
           FROM pg_proc p
          WHERE p.pronamespace = 'webhook'::regnamespace
            AND obj_description(p.oid, 'pg_proc') IS NULL",
    )
    .expect("SPI");
    assert_eq!(undocumented, None, "functions without COMMENT");
    let views = Spi::get_one::<String>(
        "SELECT string_agg(c.relname, ', ') FROM pg_class c
          WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind = 'v'
            AND obj_description(c.oid, 'pg_class') IS NULL",
    )
    .expect("SPI");
    assert_eq!(views, None, "views without COMMENT");
    let columns = Spi::get_one::<String>(
        "SELECT string_agg(c.relname || '.' || a.attname, ', ') FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind = 'v'
            AND col_description(c.oid, a.attnum) IS NULL",
    )
    .expect("SPI");
    assert_eq!(columns, None, "view columns without COMMENT");
}

/// Capture counts a number as the text `numeric_out` writes for it (capture/text_size.rs): never
/// less, whatever its weight and scale, and no more than its sign and point besides.
#[pg_test]
fn numbers_count_as_at_least_their_text() {
    use crate::capture::text_size::numeric_text;
    for literal in [
        "0", "1", "-1", "12.5", "0.001", "-0.000001", "9999", "10000", "123456789.123456789",
        "1e1000", "-9e131071", "1e-16383", "5e-500", "12345678901234567890", "NaN", "Infinity",
        "-Infinity",
    ] {
        let (datum, text) = Spi::get_two_with_args::<pgrx::AnyNumeric, i32>(
            "SELECT $1::numeric, octet_length($1::numeric::text)",
            &[literal.into()],
        )
        .expect("SPI");
        let datum = datum.expect("a number").into_datum().expect("a datum");
        let text = usize::try_from(text.expect("a length")).expect("positive");
        // SAFETY: a numeric datum of this transaction.
        let counted = unsafe { numeric_text(datum.cast_mut_ptr()) };
        assert!(
            counted >= text && counted <= text + 6,
            "{literal}: counted {counted}, text {text}"
        );
    }
    // In jsonb, at any depth, with strings' and keys' escapes (webhook._image_bytes, which
    // counts images queued before 0.3.0).
    let off = Spi::get_one::<String>(
        "SELECT string_agg(n, ', ') FROM (VALUES
            ('array', '[9e131071]'::jsonb), ('scalar', '9e5000'),
            ('nested', '{\"a\": [1e1000, {\"b\": -5e-500}], \"c\": \"x\"}'),
            ('many', (SELECT jsonb_agg(1e300) FROM generate_series(1, 100))),
            ('small', '{\"k\": [1, 2.5, true]}'),
            ('escapes', jsonb_build_object(repeat('\"', 40), repeat(chr(1), 40),
                                           E'k\\n', jsonb_build_array(E'\\t\\\\', chr(31))))) v(n, j)
          WHERE webhook._image_bytes(j, NULL) < octet_length(j::text)
             OR webhook._image_bytes(NULL, j) > octet_length(j::text) + 64 + pg_column_size(j)
             OR webhook._image_bytes(j, j) <> 2 * webhook._image_bytes(j, NULL)",
    )
    .expect("SPI");
    assert_eq!(off, None, "counted under their text, or far over");
}
