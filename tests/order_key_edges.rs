//! Per-key order (`order_key`) at its edges: key columns checked at subscribe, renamed or
//! dropped later; one value written differently (time zones, numeric scales) is one key; a
//! replayed event behind a later one of its key that is out; and a failing key's long backlog
//! beside another key. One scenario per test.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::keyed::{refusing_seq_1_twice, seqs, RETRY_SOON};
use support::receiver::{Receiver, Reply, Request};
use support::{count, error_of, exec, subscribe, WAIT};

#[test]
fn order_keys_are_checked_at_subscribe() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY, account int)");
    let call =
        |extra: &str| format!("SELECT webhook.subscribe('t', 't', 'http://127.0.0.1:9/' {extra})");
    let e = error_of(&mut db, &call(", order_key => ARRAY['acount']"));
    assert!(
        e.contains("order_key column \"acount\" does not exist in public.t"),
        "{e}"
    );
    let e = error_of(&mut db, &call(", order_key => ARRAY[]::text[]"));
    assert!(e.contains("order_key has 0 columns"), "{e}");
    let e = error_of(&mut db, &call(", order_key => ARRAY['account', 'account']"));
    assert!(e.contains("names column \"account\" twice"), "{e}");
    let e = error_of(
        &mut db,
        &call(", order_key => ARRAY['account'], ordered => true"),
    );
    assert!(e.contains("not both"), "{e}");
    let e = error_of(
        &mut db,
        &call(", order_key => ARRAY['account'], batch_size => 10"),
    );
    assert!(e.contains("leave batch_size at 1"), "{e}");
    let e = error_of(&mut db, &call(", order_key => ARRAY['account', NULL]"));
    assert!(e.contains("without NULLs"), "{e}");
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
}

#[test]
fn a_renamed_or_dropped_key_column_never_fails_a_write() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY, account int, region text);
         CREATE TABLE f (id int PRIMARY KEY, account int);",
    );
    subscribe(
        &mut db,
        "t",
        "t",
        &rx.url("/t"),
        ", order_key => ARRAY['account', 'region']",
    );
    subscribe(
        &mut db,
        "f",
        "f",
        &rx.url("/f"),
        ", order_key => ARRAY['account'], filter => 'NEW.id > 0', events => ARRAY['insert']",
    );
    exec(
        &mut db,
        "ALTER TABLE t RENAME COLUMN account TO acct; ALTER TABLE t DROP COLUMN region;
         ALTER TABLE f RENAME COLUMN account TO acct;
         INSERT INTO t VALUES (1, 7), (2, 8); INSERT INTO f VALUES (3, 9);",
    );
    wait_until(WAIT, "the three events", || rx.accepted().len() == 3);
}

#[test]
fn one_instant_written_from_sessions_in_different_time_zones_is_one_key() {
    let pg = Cluster::start(&[]);
    let rx = refusing_seq_1_twice();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE slots (id int PRIMARY KEY, starts_at timestamptz, seq int)",
    );
    subscribe(
        &mut db,
        "slots",
        "slots",
        &rx.url("/slots"),
        &format!(", order_key => ARRAY['starts_at']{RETRY_SOON}"),
    );
    // The same row's value, shown as 09:00+00 to one writer and 10:00+01 to the other.
    exec(&mut db, "SET TimeZone = 'UTC'");
    exec(
        &mut db,
        "INSERT INTO slots VALUES (1, '2026-01-01 09:00:00+00', 1)",
    );
    exec(&mut db, "SET TimeZone = 'Europe/Berlin'");
    exec(&mut db, "UPDATE slots SET seq = 2 WHERE id = 1");
    wait_until(WAIT, "both events", || rx.accepted().len() == 2);
    assert_eq!(
        seqs(&rx),
        vec![1, 2],
        "the second went while the first was retried"
    );
}

#[test]
fn equal_numbers_written_with_different_scales_are_one_key() {
    let pg = Cluster::start(&[]);
    let rx = refusing_seq_1_twice();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE accounts (id int PRIMARY KEY, account numeric, seq int)",
    );
    subscribe(
        &mut db,
        "accounts",
        "accounts",
        &rx.url("/accounts"),
        &format!(", order_key => ARRAY['account']{RETRY_SOON}"),
    );
    exec(&mut db, "INSERT INTO accounts VALUES (1, 1.0, 1)");
    exec(&mut db, "INSERT INTO accounts VALUES (2, 1.00, 2)");
    wait_until(WAIT, "both events", || rx.accepted().len() == 2);
    assert_eq!(seqs(&rx), vec![1, 2], "1.00 went while 1.0 was retried");
}

#[test]
fn a_replayed_event_waits_while_a_later_event_of_its_key_is_out() {
    let pg = Cluster::start(&[]);
    let first = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rx = Receiver::with(
        move |req: &Request, _| match req.json()["record"]["seq"].as_i64() {
            Some(1) if first.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                Reply::Status(500)
            }
            Some(2) => Reply::Delay(Duration::from_secs(3), 204),
            _ => Reply::Status(204),
        },
    );
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE accounts (id int PRIMARY KEY, account int, seq int)",
    );
    subscribe(
        &mut db,
        "accounts",
        "accounts",
        &rx.url("/accounts"),
        ", order_key => ARRAY['account'], max_attempts => 1",
    );
    exec(&mut db, "INSERT INTO accounts VALUES (1, 7, 1)");
    wait_until(WAIT, "seq 1 dead", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'",
        ) == 1
    });
    exec(&mut db, "INSERT INTO accounts VALUES (2, 7, 2)");
    wait_until(WAIT, "seq 2 out", || rx.requests().len() == 2);
    // Replayed, seq 1 keeps its id and is its key's head again, behind seq 2 that is out.
    exec(
        &mut db,
        "SELECT webhook.replay(id) FROM webhook.events WHERE status = 'dead'",
    );
    wait_until(WAIT, "both delivered", || rx.accepted().len() == 2);
    assert_eq!(seqs(&rx), vec![2, 1]);
    assert_eq!(
        rx.peak_concurrency(),
        1,
        "account 7 had two events out at once"
    );
}

#[test]
fn a_failing_key_with_a_long_backlog_does_not_hide_the_other_keys() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|req: &Request, _| {
        if req.json()["record"]["account"].as_i64() == Some(1) {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE accounts (id int PRIMARY KEY, account int, seq int)",
    );
    subscribe(
        &mut db,
        "accounts",
        "accounts",
        &rx.url("/accounts"),
        ", order_key => ARRAY['account'], retry_schedule => ARRAY['1 hour']::interval[], max_attempts => 10",
    );
    // Account 1's head fails and waits an hour; 1,500 more of its events queue behind it, older
    // than account 2's only one.
    exec(
        &mut db,
        "INSERT INTO accounts SELECT g, 1, g FROM generate_series(1, 1500) g",
    );
    wait_until(WAIT, "account 1's head to fail", || {
        rx.requests().len() == 1
    });
    exec(&mut db, "INSERT INTO accounts VALUES (5000, 2, 1)");
    wait_until(WAIT, "account 2's event", || {
        rx.accepted()
            .iter()
            .any(|r| r.json()["record"]["account"].as_i64() == Some(2))
    });
    assert_eq!(
        rx.requests().len(),
        2,
        "account 1 sent nothing past its failing head"
    );
}

#[test]
fn keyed_subscriptions_with_nothing_queued_hold_up_no_other_ordered_delivery() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE idle (id int PRIMARY KEY, k int);
         CREATE TABLE busy (id int PRIMARY KEY, account int);",
    );
    // Keyed subscriptions of a table nobody writes, half of them unsubscribed (their rows
    // stay): each worker asks them for heads at every claim too.
    for n in 0..40 {
        subscribe(
            &mut db,
            &format!("idle{n}"),
            "idle",
            &rx.url("/idle"),
            ", order_key => ARRAY['k']",
        );
        if n % 2 == 0 {
            exec(&mut db, &format!("SELECT webhook.unsubscribe('idle{n}')"));
        }
    }
    subscribe(
        &mut db,
        "keyed",
        "busy",
        &rx.url("/keyed"),
        ", order_key => ARRAY['account']",
    );
    subscribe(
        &mut db,
        "whole",
        "busy",
        &rx.url("/whole"),
        ", ordered => true",
    );
    // One row at a time, the next once both have the last: each head goes out within
    // moments. Before, the first keyed subscription a claim looked at was asked for as many
    // heads as there was room, an idle one too, and the others for none until the
    // subscriptions were loaded again in another order (seconds for each row).
    let delivered = |rx: &Receiver, path: &str, id: i64| {
        rx.accepted()
            .iter()
            .any(|r| r.path == path && r.json()["record"]["id"].as_i64() == Some(id))
    };
    let deadline = std::time::Instant::now() + WAIT;
    for id in 1..=20 {
        exec(
            &mut db,
            &format!("INSERT INTO busy VALUES ({id}, {})", id % 3),
        );
        wait_until(
            deadline.saturating_duration_since(std::time::Instant::now()),
            &format!("row {id} at both subscriptions, all 20 within {WAIT:?}"),
            || delivered(&rx, "/keyed", id) && delivered(&rx, "/whole", id),
        );
    }
}
