//! The callback runner's own statements wait only so long for a lock an owner's session holds:
//! the runner runs one thing at a time, so while it waits, every owner's callbacks and backfill
//! chunks wait with it.

mod support;

use postgres::Client;
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
    let (_pg, _rx, mut su, mut alice, _bob_replays, _second) = replay_left_open(false);
    wait_until(support::WAIT, "the runner waiting for bob's replay", || {
        count(&mut su, RUNNER_WAITS) == 1
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    wait_until(support::WAIT, "alice's callback", || {
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
    let (_pg, _rx, mut su, _alice, mut bob_replays, second) = replay_left_open(true);
    // Called for row 2 twice (row 1 once), each time its failure's recording waiting for the
    // replay; then a third try waits for it too.
    wait_until(support::WAIT, "the second failing call", || {
        count(&mut su, "SELECT last_value FROM calls") >= 3
    });
    let after = text(&mut su, "SELECT clock_timestamp()::text").unwrap_or_default();
    wait_until(support::WAIT, "the runner's third try waiting", || {
        count(
            &mut su,
            &format!("{RUNNER_WAITS} AND xact_start > '{after}'::timestamptz"),
        ) == 1
    });
    exec(&mut bob_replays, "ROLLBACK");
    wait_until(support::WAIT, "bob's callbacks done", || {
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

#[test]
fn a_dbas_lock_on_the_subscriptions_table_loses_no_callback() {
    // A DBA's VACUUM FULL (here a LOCK TABLE) of webhook._subscriptions for over a second: the
    // runner's read of the event for the next callback gave up after its 1 s lock timeout, and
    // that was recorded as the callback's failure ("the event could not be read for the
    // callback"), the callback never called. Before the runner had a lock timeout it waited.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '20s'",
    ]);
    let rx = Receiver::start();
    // bob's callback notes the rows it is called for; rows 1 and 2 wait for a gate each.
    let (mut su, _alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE gate1 (id int);
         CREATE TABLE gate2 (id int);
         CREATE TABLE bob_ran (id int);
         CREATE FUNCTION public.gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             CASE (e->'record'->>'id')::int
                 WHEN 1 THEN LOCK TABLE public.gate1 IN ACCESS SHARE MODE;
                 WHEN 2 THEN LOCK TABLE public.gate2 IN ACCESS SHARE MODE;
                 ELSE NULL;
             END CASE;
             INSERT INTO public.bob_ran VALUES ((e->'record'->>'id')::int);
         END $$;",
        "public.gated(jsonb)",
        0.0,
    );
    let mut bob2 = pg.connect_as("postgres", "bob");
    exec(&mut bob, "BEGIN; LOCK TABLE gate1");
    exec(&mut bob2, "BEGIN; LOCK TABLE gate2");
    exec(&mut su, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "callback 1 to start", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._callback_queue WHERE starts > 0",
        ) == 1
    });
    exec(&mut su, "INSERT INTO bobs VALUES (2), (3)");
    wait_until(support::WAIT, "callbacks 2 and 3 queued", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 3
    });
    exec(&mut bob, "COMMIT");
    // The runner read 2 and 3 in one batch, and calls 2, which waits for its gate.
    wait_until(support::WAIT, "callback 2 to start", || {
        count(&mut su, "SELECT count(*) FROM bob_ran") == 1
            && count(
                &mut su,
                "SELECT count(*) FROM webhook._callback_queue WHERE starts > 0",
            ) == 1
    });
    // The DBA's lock waits for callback 2's transaction, and is granted as it ends.
    let (tx, done) = std::sync::mpsc::channel::<()>();
    let mut dba = pg.connect("postgres");
    let holder = std::thread::spawn(move || {
        exec(
            &mut dba,
            "BEGIN; LOCK TABLE webhook._subscriptions IN ACCESS EXCLUSIVE MODE",
        );
        let _ = done.recv();
        exec(&mut dba, "COMMIT");
    });
    wait_until(support::WAIT, "the DBA's lock queued", || {
        count(
            &mut su,
            "SELECT count(*) FROM pg_stat_activity
              WHERE query LIKE 'BEGIN; LOCK TABLE webhook._subscriptions%'
                AND wait_event_type = 'Lock'",
        ) == 1
    });
    exec(&mut bob2, "COMMIT");
    // Callback 3 runs into the DBA's lock: its queue row is gone (recorded), or the runner
    // tries again in a transaction of its own.
    let first = text(&mut su, "SELECT clock_timestamp()::text").unwrap_or_default();
    wait_until(support::WAIT, "callback 3 recorded or tried again", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 0
            || count(
                &mut su,
                &format!(
                    "{RUNNER_WAITS} AND xact_start > '{first}'::timestamptz + interval '1.2 s'"
                ),
            ) == 1
    });
    let _ = tx.send(());
    holder
        .join()
        .unwrap_or_else(|_| panic!("the DBA's session panicked"));
    wait_until(support::WAIT, "bob's callbacks done", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 0
    });
    let errors = text(
        &mut su,
        "SELECT string_agg(callback_error, '; ') FROM webhook._event_archive",
    );
    assert_eq!(errors, None, "no callback failed");
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM bob_ran WHERE id = 3"),
        1,
        "callback 3 was called"
    );
}

#[test]
fn a_cancel_backfill_rolled_back_counts_no_interruption() {
    // bob's cancel_backfill(), in a transaction he then rolled back, held the backfill's row
    // while the runner ended its round: when the round's mark was in that row, ending it gave
    // up after the runner's 1 s, leaving the mark, which the next runner process (after
    // alice's turn) counted as its runner having ended mid-chunk. Three such and bob's
    // backfill failed for it.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         INSERT INTO bobs SELECT generate_series(1, 3000);
         CREATE FUNCTION public.bob_notes(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;",
        "public.bob_notes(jsonb)",
        0.0,
    );
    // Each chunk of 500 rows takes over the runner's 50 ms slice: one chunk a round.
    exec(
        &mut bob,
        "SELECT * FROM webhook.backfill('bobs',
             filter => $f$ pg_catalog.pg_sleep(0.0003)::text = '' $f$)",
    );
    wait_until(support::WAIT, "a first chunk", || {
        count(&mut su, "SELECT rows_sent FROM webhook.backfills") > 0
    });
    let mut bob2 = pg.connect_as("postgres", "bob");
    exec(&mut bob2, "BEGIN; SELECT webhook.cancel_backfill('bobs')");
    // The round ends while the cancel is open: its mark is a row of its own.
    wait_until(support::WAIT, "the runner's round to end", || {
        count(&mut su, "SELECT count(*) FROM webhook._backfill_rounds") == 0
    });
    // Alice's callback: the runner hands over to a process of hers, then a fresh one of bob's.
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    wait_until(support::WAIT, "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 1
    });
    exec(&mut bob2, "ROLLBACK");
    support::backfill::wait_state(&mut bob, "bobs", "done");
    assert_eq!(
        count(
            &mut su,
            "SELECT interruptions::bigint FROM webhook._backfills"
        ),
        0,
        "no runner ended while running bob's chunks"
    );
}

/// bob's callback `public.gated` waits for his gate and fails on row 2 (and, `counting`, counts
/// its calls in sequence `calls`, which no rollback undoes). Rows 1 and 2 are queued while his
/// session holds the gate, row 1's callback starts, bob replays row 2's event in a session of
/// his own left open, then opens the gate. The cluster, its receiver, the superuser's, alice's
/// and the replaying sessions, and row 2's event id.
fn replay_left_open(counting: bool) -> (Cluster, Receiver, Client, Client, Client, i64) {
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '20s'",
    ]);
    let rx = Receiver::start();
    let (sequence, count_call) = if counting {
        (
            "CREATE SEQUENCE calls;",
            "PERFORM pg_catalog.nextval('public.calls');",
        )
    } else {
        ("", "")
    };
    let (mut su, alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        &format!(
            "CREATE TABLE bobs (id int PRIMARY KEY);
             CREATE TABLE gate (id int);
             {sequence}
             CREATE FUNCTION public.gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 LOCK TABLE public.gate IN ACCESS SHARE MODE;
                 {count_call}
                 IF (e->'record'->>'id')::int = 2 THEN
                     RAISE EXCEPTION 'bob fails';
                 END IF;
             END $$;"
        ),
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
    (pg, rx, su, alice, bob_replays, second)
}
