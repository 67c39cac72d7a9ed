//! The callback runner's own statements wait only so long for a lock an owner's session holds:
//! the runner runs one thing at a time, so while it waits, every owner's callbacks and backfill
//! chunks wait with it.

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, text};

/// Sessions of the runner waiting for a lock.
const RUNNER_WAITS: &str = "SELECT count(*) FROM pg_stat_activity
     WHERE application_name = 'pg_webhook callbacks' AND wait_event_type = 'Lock'";

#[test]
fn an_owners_open_replay_does_not_hold_up_another_owners_callbacks() {
    // bob replayed an event whose callback was queued, in a transaction he left open: the
    // replay's row lock on the archived event held the runner's recording of that callback's
    // failure, with no lock timeout, for as long as bob liked; nobody's callback ran meanwhile.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '20s'",
    ]);
    let rx = Receiver::start();
    // bob's callback waits for his gate, and fails on row 2.
    let (mut su, mut alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE gate (id int);
         CREATE FUNCTION public.gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             LOCK TABLE public.gate IN ACCESS SHARE MODE;
             IF (e->'record'->>'id')::int = 2 THEN
                 RAISE EXCEPTION 'bob fails';
             END IF;
         END $$;",
        "public.gated(jsonb)",
        0.0,
    );
    let mut bob_replays = pg.connect_as("postgres", "bob");
    exec(&mut bob, "BEGIN; LOCK TABLE gate");
    exec(&mut su, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "bob's first callback to start", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._callback_queue WHERE starts > 0",
        ) == 1
    });
    exec(&mut su, "INSERT INTO bobs VALUES (2)");
    wait_until(support::WAIT, "bob's second callback queued", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 2
    });
    let second = count(&mut su, "SELECT max(event_id) FROM webhook._callback_queue");
    exec(
        &mut bob_replays,
        &format!("BEGIN; SELECT webhook.replay({second})"),
    );
    exec(&mut bob, "COMMIT");
    wait_until(support::WAIT, "the runner waiting for bob's replay", || {
        count(&mut su, RUNNER_WAITS) == 1
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    wait_until(Duration::from_secs(30), "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 1
    });
}

#[test]
fn a_callbacks_failure_held_up_by_an_open_replay_is_recorded_as_itself() {
    // bob's callback failed while his replay of its event, left open, row-locked the archived
    // event: recording the failure gave up after the runner's lock timeout and was rolled back,
    // but the start counted before the call stayed, as if the runner had died during it. Two
    // such and, once bob rolled the replay back, the callback was recorded as "stopped 2 times
    // before it finished" (a runner ending mid-call), its own error lost.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '20s'",
    ]);
    let rx = Receiver::start();
    // bob's callback waits for his gate, counts its calls (a sequence is not rolled back), and
    // fails on row 2.
    let (mut su, _alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE gate (id int);
         CREATE SEQUENCE calls;
         CREATE FUNCTION public.gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             LOCK TABLE public.gate IN ACCESS SHARE MODE;
             PERFORM pg_catalog.nextval('public.calls');
             IF (e->'record'->>'id')::int = 2 THEN
                 RAISE EXCEPTION 'bob fails';
             END IF;
         END $$;",
        "public.gated(jsonb)",
        0.0,
    );
    let mut bob_replays = pg.connect_as("postgres", "bob");
    exec(&mut bob, "BEGIN; LOCK TABLE gate");
    exec(&mut su, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "bob's first callback to start", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._callback_queue WHERE starts > 0",
        ) == 1
    });
    exec(&mut su, "INSERT INTO bobs VALUES (2)");
    wait_until(support::WAIT, "bob's second callback queued", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 2
    });
    let second = count(&mut su, "SELECT max(event_id) FROM webhook._callback_queue");
    exec(
        &mut bob_replays,
        &format!("BEGIN; SELECT webhook.replay({second})"),
    );
    exec(&mut bob, "COMMIT");
    // Called for row 2 twice (row 1 once), each time its failure's recording waiting for the
    // replay; then a third try waits for it too.
    wait_until(Duration::from_secs(30), "the second failing call", || {
        count(&mut su, "SELECT last_value FROM calls") >= 3
    });
    let after = text(&mut su, "SELECT clock_timestamp()::text").unwrap_or_default();
    wait_until(
        Duration::from_secs(30),
        "the runner's third try waiting",
        || {
            count(
                &mut su,
                &format!("{RUNNER_WAITS} AND xact_start > '{after}'::timestamptz"),
            ) == 1
        },
    );
    exec(&mut bob_replays, "ROLLBACK");
    wait_until(Duration::from_secs(30), "bob's callbacks done", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 0
    });
    let error = text(
        &mut su,
        &format!("SELECT callback_error FROM webhook._event_archive WHERE id = {second}"),
    )
    .unwrap_or_default();
    assert!(
        error.contains("bob fails"),
        "the callback's own failure is recorded: {error}"
    );
}
