//! Row images count as their size as text, which is what a worker reads. jsonb keeps a number
//! as base-10000 digits with a weight, so `9e131071` takes a few bytes stored and 131,072 as
//! text. Counted as stored, 8,300 of them in a 2 kB jsonb value made a worker's every claim
//! read a gigabyte of text and fail with "out of memory", so the worker delivered nothing for
//! any subscription until the event was discarded by hand; smaller ones were read whole before
//! they died as too large. Now each dies unread, with its size as text, and the worker goes on.
//! Strings likewise: a control character is one byte stored and six as text (`\u0001`).

mod support;

use postgres::Client;
use support::cluster::{install_released_script, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, WAIT};

/// A cluster with `setting`, table `t (id int PRIMARY KEY<columns>)` subscribed with `extra`,
/// and table `u (id)` subscribed too, whose row 2 is the marker that the worker goes on.
fn subscribed(setting: &str, columns: &str, extra: &str) -> (Cluster, Receiver, Client) {
    let pg = Cluster::start(&[setting]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY{columns}); CREATE TABLE u (id int PRIMARY KEY)"
        ),
    );
    subscribe(&mut db, "t", "t", &rx.url("/t"), extra);
    subscribe(&mut db, "u", "u", &rx.url("/u"), "");
    (pg, rx, db)
}

/// Waits for the marker, then for `t`'s event to die unread, and returns the size its error
/// gives.
fn died_unread(db: &mut Client, rx: &Receiver) -> i64 {
    exec(db, "INSERT INTO u VALUES (2)");
    wait_until(WAIT, "the marker", || rx.accepted_ids().contains(&2));
    wait_until(WAIT, "t's event to die", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events e JOIN webhook.subscriptions s
                 ON s.id = e.subscription_id
              WHERE s.name = 't' AND e.status = 'dead'",
        ) == 1
    });
    let error = text(
        db,
        "SELECT e.last_error FROM webhook.events e JOIN webhook.subscriptions s
             ON s.id = e.subscription_id WHERE s.name = 't'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("too large to send") && error.contains("left unread"),
        "{error}"
    );
    assert!(
        rx.accepted().iter().all(|r| !r.path.starts_with("/t")),
        "nothing of t's event went out"
    );
    error
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no size in: {error}"))
}

#[test]
fn a_jsonb_value_of_a_gigabyte_as_text_dies_unread_and_the_worker_goes_on() {
    // One worker: the one that would fail on the event is the one the marker needs.
    let (_pg, rx, mut db) = subscribed("pg_webhook.workers = 1", ", doc jsonb", "");
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, jsonb_agg('9e131071'::numeric) FROM generate_series(1, 8300)",
    );
    assert!(
        count(&mut db, "SELECT pg_column_size(doc)::bigint FROM t") < 4096,
        "the value is small as stored"
    );
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 8300 * 131_072, "counted as text: {bytes}");
    // Over what any worker reads: capture did not even build the image.
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook.events WHERE record IS NULL AND op = 'INSERT' AND table_name = 't'"),
        1
    );
}

#[test]
fn a_payload_whose_numbers_pass_the_limit_as_text_dies_unread() {
    // Read up to 4 x 64 kB: four numbers of 131,072 digits pass it, in 60 bytes stored.
    let (_pg, rx, mut db) = subscribed(
        "pg_webhook.max_payload_bytes = '64kB'",
        "",
        ", payload => $$(SELECT pg_catalog.jsonb_agg('9e131071'::pg_catalog.numeric)
                           FROM pg_catalog.generate_series(1, 4))$$",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 4 * 131_072, "counted as text: {bytes}");
}

#[test]
fn a_numeric_column_of_many_digits_counts_them() {
    // Read up to 4 x 16 kB; the number is 131,072 digits as text.
    let (_pg, rx, mut db) = subscribed("pg_webhook.max_payload_bytes = '16kB'", ", n numeric", "");
    exec(&mut db, "INSERT INTO t VALUES (1, 9e131071)");
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 131_072, "counted as text: {bytes}");
}

#[test]
fn a_text_column_of_control_characters_counts_their_escapes() {
    // Read up to 4 x 64 kB: 60,000 of chr(1) are 360,000 bytes as text. Before, counted
    // 60,000, the event was read and rendered whole to die as too large: a transaction of
    // such rows grouped made a cut step of "32 MiB" render a gigabyte.
    let (_pg, rx, mut db) = subscribed("pg_webhook.max_payload_bytes = '64kB'", ", s text", "");
    exec(&mut db, "INSERT INTO t VALUES (1, repeat(chr(1), 60000))");
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 6 * 60_000, "counted as text: {bytes}");
}

#[test]
fn a_jsonb_values_strings_and_keys_count_their_escapes() {
    // Read up to 4 x 64 kB: keys and strings of quotes (two bytes each as text) and of
    // control characters (six) in a jsonb value, 100,000 bytes stored, 320,000 as text.
    let (_pg, rx, mut db) = subscribed("pg_webhook.max_payload_bytes = '64kB'", ", doc jsonb", "");
    exec(
        &mut db,
        "INSERT INTO t SELECT 1, jsonb_build_object(repeat('\"', 50000), repeat(chr(31), 50000))",
    );
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 2 * 50_000 + 6 * 50_000, "counted as text: {bytes}");
}

#[test]
fn a_row_whose_escapes_fit_is_sent_and_counted_as_its_text() {
    // Counted by what it grows to as text, not over: newlines and tabs take two bytes, and a
    // row of them under the limit as text goes out whole.
    let (_pg, rx, mut db) = subscribed("", ", s text", "");
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, repeat(E'line\\n\\t\"q\"', 1000))",
    );
    wait_until(WAIT, "t's event", || {
        rx.accepted().iter().any(|r| r.path.starts_with("/t"))
    });
    let id = count(
        &mut db,
        "SELECT max(id) FROM webhook.events WHERE table_name = 't'",
    );
    let image = count(
        &mut db,
        &format!("SELECT octet_length(record::text)::bigint FROM webhook.events WHERE id = {id}"),
    );
    let counted = counted(&mut db, id);
    assert!(
        counted >= image && counted < image + 200,
        "counted {counted} for {image} bytes of text"
    );
}

/// `payload_bytes` of event `id`, queued or archived.
fn counted(db: &mut Client, id: i64) -> i64 {
    count(
        db,
        &format!(
            "SELECT payload_bytes::bigint FROM webhook._event_queue WHERE id = {id}
             UNION ALL SELECT payload_bytes FROM webhook._event_archive WHERE id = {id}"
        ),
    )
}

#[test]
fn events_from_before_0_3_0_count_their_numbers_as_text_at_the_update_and_at_a_replay() {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '16kB'"]);
    let mut db = pg.connect("postgres");
    exec(
        &mut db,
        "CREATE EXTENSION pg_webhook VERSION '0.2.0';
         CREATE TABLE t (id int PRIMARY KEY, n numeric)",
    );
    let rx = Receiver::start();
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    // Queued under 0.2.0 (this library delivers nothing for its objects), and one archived
    // then (written by hand), dead, with no size recorded.
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 9e131071);
         INSERT INTO webhook._event_archive
                (id, subscription_id, op, table_schema, table_name, created_at, attempts,
                 status, record)
         VALUES (900, 1, 'INSERT', 'public', 't', now(), 1, 'dead',
                 jsonb_build_object('id', 900, 'n', 9e131071));
         ALTER EXTENSION pg_webhook UPDATE",
    );
    let queued = count(&mut db, "SELECT min(id) FROM webhook._event_queue");
    assert!(counted(&mut db, queued) > 131_072, "the queued event");
    assert_eq!(counted(&mut db, 900), 0, "none recorded when archived");
    exec(&mut db, "SELECT webhook.replay(900)");
    wait_until(WAIT, "both to die unread", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events
              WHERE status = 'dead' AND last_error LIKE '%left unread%'",
        ) == 2
    });
    assert!(counted(&mut db, 900) > 131_072, "the replayed event");
    assert!(rx.accepted().is_empty(), "neither went out");
}

#[test]
fn a_backfills_payload_read_toasted_counts_its_numbers() {
    // A backfill reads its payloads as stored, toasted: 200 kB of padding compressed out of
    // line, beside a number of 131,072 digits. Read up to 4 x 64 kB.
    let (_pg, rx, mut db) = subscribed(
        "pg_webhook.max_payload_bytes = '64kB'",
        ", doc jsonb",
        ", events => ARRAY['update'], payload => $$NEW.doc$$",
    );
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, jsonb_build_object('pad', repeat('x', 200000), 'n', 9e131071));
         SELECT webhook.backfill('t')",
    );
    let bytes = died_unread(&mut db, &rx);
    assert!(bytes > 200_000 + 131_072, "counted as text: {bytes}");
}
