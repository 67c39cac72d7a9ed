//! Owners take turns in the callback runner even when a runner process ends in the middle of
//! one (the watchdog ends one whose callback or chunk goes on after its cancel), or cannot end
//! because its owner's call is blocked where no interrupt reaches it.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use postgres::Client;
use support::backfill::wait_state;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::silent::{silent_server, Release, ALL};
use support::{count, exec, text};

/// bob, whose callback `public.stubborn` ignores its cancel, and alice (see
/// `support::runner::bob_and_alice`).
fn bob_and_alice(pg: &Cluster, rx: &Receiver, pause: f64) -> (Client, Client, Client) {
    support::runner::bob_and_alice(
        pg,
        rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE SEQUENCE public.bob_starts;
         GRANT SELECT ON public.bob_starts TO alice;
         CREATE FUNCTION public.stubborn(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_catalog.nextval('public.bob_starts');
             LOOP
                 BEGIN
                     PERFORM pg_catalog.pg_sleep(0.05);
                 EXCEPTION WHEN query_canceled THEN
                     NULL;
                 END;
             END LOOP;
         END $$;",
        "public.stubborn(jsonb)",
        pause,
    )
}

#[test]
fn a_runner_that_ends_in_an_owners_turn_passes_the_turn_on() {
    // The watchdog ends the runner of a callback that ignores its cancel; the next runner knew
    // of no turn before it and started again with the owner of the lowest OID. bob, made
    // before alice, had the turn after each of his callbacks ended a runner: 40 runners, about
    // 5 s each, while alice's callback waited.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    let rx = Receiver::start();
    let (_su, mut alice, mut bob) = bob_and_alice(&pg, &rx, 0.0);
    exec(&mut bob, "INSERT INTO bobs SELECT generate_series(1, 20)");
    wait_until(support::WAIT, "bob's events delivered", || {
        rx.requests().iter().filter(|r| r.path == "/bob").count() >= 20
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    // One of bob's callbacks may be running: it ends its runner within callback_timeout and
    // the watchdog's 5 s grace; alice's turn comes next.
    wait_until(support::WAIT, "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 1
    });
}

/// Times bob's callbacks were started: those still queued count their starts, and one recorded
/// as failed after its runner was stopped twice during it counts two.
const BOBS_STARTS: &str = "
    SELECT (SELECT COALESCE(sum(q.starts), 0) FROM webhook._callback_queue q
              JOIN webhook._subscriptions s ON s.id = q.subscription_id WHERE s.name = 'bobs')
         + 2 * (SELECT count(*) FROM webhook.events e
                  JOIN webhook._subscriptions s ON s.id = e.subscription_id
                 WHERE s.name = 'bobs' AND e.callback_error LIKE '%was stopped 2 times%')";

#[test]
fn an_owner_whose_turn_ended_with_the_runner_sits_out_while_another_owners_callbacks_wait() {
    // Each of bob's turns ended a runner, callback_timeout and the watchdog's 5 s grace in, and
    // came round again after each of alice's 1 s turns: her 2 s of callbacks took two of bob's
    // runners, and a long stream of hers one every second of hers.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = bob_and_alice(&pg, &rx, 0.05);
    exec(
        &mut alice,
        "CREATE FUNCTION public.bob_starts_now() RETURNS bigint LANGUAGE sql AS
             $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.bob_starts $$;
         ALTER TABLE alice_ran ADD COLUMN bob_starts bigint DEFAULT public.bob_starts_now();",
    );
    exec(&mut bob, "INSERT INTO bobs SELECT generate_series(1, 3)");
    wait_until(support::WAIT, "bob's first callback to start", || {
        count(&mut su, BOBS_STARTS) >= 1
    });
    exec(
        &mut alice,
        "INSERT INTO alices SELECT generate_series(1, 40)",
    );
    wait_until(Duration::from_secs(60), "alice's callbacks", || {
        count(&mut alice, "SELECT count(*) FROM alice_ran") == 40
    });
    // Each of alice's callbacks noted how often bob's had started by then (a sequence, which
    // the end of bob's runners does not roll back): once, for every one of them. Counted after
    // the fact, bob's next turn could come before a slow test looked.
    assert_eq!(
        text(
            &mut alice,
            "SELECT string_agg(DISTINCT bob_starts::text, ',') FROM alice_ran"
        )
        .as_deref(),
        Some("1"),
        "bob's callbacks were started again while alice's waited"
    );
}

/// bob, whose callback connects to `port` with dblink (for the event of row 1 only, with
/// `only_first`) and then notes the row in bob_ran; and alice.
fn bob_blocked_and_alice(
    pg: &Cluster,
    rx: &Receiver,
    port: u16,
    only_first: bool,
) -> (Client, Client, Client) {
    exec(&mut pg.connect("postgres"), "CREATE EXTENSION dblink");
    let connect = format!(
        "PERFORM public.dblink_connect('host=127.0.0.1 port={port} dbname=x user=x password=x')"
    );
    let block = match only_first {
        true => format!("IF (e->'record'->>'id')::int = 1 THEN {connect}; END IF;"),
        false => format!("{connect};"),
    };
    support::runner::bob_and_alice(
        pg,
        rx,
        &format!(
            "CREATE TABLE bobs (id int PRIMARY KEY);
             CREATE TABLE bob_ran (id int, at timestamptz);
             CREATE FUNCTION public.hang(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 {block}
                 INSERT INTO public.bob_ran
                 VALUES ((e->'record'->>'id')::int, pg_catalog.clock_timestamp());
             END $$;"
        ),
        "public.hang(jsonb)",
        0.0,
    )
}

/// The callback runners stuck in a call, as the monitoring query reports them.
const STUCK_RUNNERS: &str = "SELECT webhook._stuck_runners()::bigint";

/// The callback runner's processes.
const RUNNERS: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_webhook callbacks'";

/// alice's callback runs while bob's code blocks a runner: in another runner, started beside
/// the blocked one.
fn alice_goes_on(su: &mut Client, alice: &mut Client) {
    exec(alice, "INSERT INTO alices VALUES (1)");
    wait_until(Duration::from_secs(60), "alice's callback", || {
        count(alice, "SELECT count(*) FROM alice_ran") == 1
    });
    assert_eq!(count(su, RUNNERS), 2, "the blocked runner is still there");
    assert_eq!(
        count(su, STUCK_RUNNERS),
        1,
        "the blocked runner is counted stuck"
    );
}

/// What `a_runner_blocked_by_bob` leaves running.
struct Blocked {
    _pg: Cluster,
    _rx: Receiver,
    su: Client,
    bob: Client,
    /// Lets bob's blocked callback go (its connection closes).
    let_go: Release,
}

/// bob's code blocks a runner in dblink_connect to a silent server (`block` makes it, given
/// the superuser's and bob's connections and the server's port); alice's callback, queued
/// after, runs all the same. bob's callback connects for the event of row 1 (and those of his
/// other rows too, unless `only_first`).
fn a_runner_blocked_by_bob(
    settings: &[&str],
    only_first: bool,
    block: impl FnOnce(&mut Client, &mut Client, u16),
) -> Blocked {
    let (port, let_go) = silent_server();
    let pg = Cluster::start(settings);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = bob_blocked_and_alice(&pg, &rx, port, only_first);
    block(&mut su, &mut bob, port);
    // The cancel (at callback_timeout, or a chunk's 2 s), the watchdog 5 s later, and 10 s
    // after that the launcher starts a runner beside the one still blocked; alice's turn comes
    // in it.
    alice_goes_on(&mut su, &mut alice);
    Blocked {
        _pg: pg,
        _rx: rx,
        su,
        bob,
        let_go,
    }
}

const SHORT_CALLBACKS: &[&str] = &[
    "pg_webhook.poll_interval = '100ms'",
    "pg_webhook.callback_timeout = '200ms'",
];

/// bob's callback of row 1 blocks its runner.
fn bobs_callback_blocks(su: &mut Client, bob: &mut Client, _port: u16) {
    exec(bob, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "bob's callback to start", || {
        count(su, BOBS_STARTS) >= 1
    });
}

#[test]
fn a_callback_blocked_in_a_connection_that_never_answers_does_not_hold_up_another_owner() {
    a_runner_blocked_by_bob(SHORT_CALLBACKS, false, bobs_callback_blocks);
}

#[test]
fn a_blocked_owners_callbacks_wait_until_the_blocked_process_ends() {
    // Were bob's next callback run in the new runner while the first still hangs, each of his
    // callbacks could block one more process, until no background worker slot was left.
    let mut blocked = a_runner_blocked_by_bob(SHORT_CALLBACKS, true, bobs_callback_blocks);
    let (su, bob) = (&mut blocked.su, &mut blocked.bob);
    exec(bob, "INSERT INTO bobs VALUES (2)");
    // bob sits out 10 s from the new runner's start, as for any turn that ended with its
    // runner (see tests above); after that only the blocked process holds him back.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(count(su, RUNNERS), 2, "the blocked runner is still there");
    assert_eq!(
        count(su, BOBS_STARTS),
        1,
        "bob's blocked callback was started again in another process"
    );
    let let_go_at = count(
        su,
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    );
    blocked.let_go.store(ALL, Ordering::SeqCst);
    wait_until(support::WAIT, "bob's second callback", || {
        count(bob, "SELECT count(*) FROM bob_ran WHERE id = 2") == 1
    });
    let ran_at = count(
        bob,
        "SELECT (extract(epoch FROM at) * 1000)::bigint FROM bob_ran WHERE id = 2",
    );
    assert!(
        ran_at > let_go_at,
        "bob's second callback ran {} ms before the blocked process was let go",
        let_go_at - ran_at
    );
}

/// bob's backfill filter blocks its runner.
fn a_runner_blocked_by_bobs_backfill() -> Blocked {
    a_runner_blocked_by_bob(
        &["pg_webhook.poll_interval = '100ms'"],
        true,
        |su, bob, port| {
            exec(bob, "INSERT INTO bobs VALUES (2)");
            exec(
                bob,
                &format!(
                    "SELECT * FROM webhook.backfill('bobs', filter => $f$
                         public.dblink_connect('host=127.0.0.1 port={port} dbname=x user=x password=x') = 'OK'
                     $f$)"
                ),
            );
            wait_until(support::WAIT, "bob's chunk to start", || {
                count(su, "SELECT count(*) FROM webhook._backfill_rounds") == 1
            });
        },
    )
}

#[test]
fn a_backfill_filter_blocked_in_a_connection_that_never_answers_does_not_hold_up_another_owner() {
    a_runner_blocked_by_bobs_backfill();
}

#[test]
fn a_backfill_whose_filter_blocked_its_runner_goes_on_once_the_blocked_process_ends() {
    let mut blocked = a_runner_blocked_by_bobs_backfill();
    blocked.let_go.store(ALL, Ordering::SeqCst);
    // Its filter's connections now fail at once: the backfill goes on in the new runner and
    // fails there, its chunk failing three times in a row.
    wait_state(&mut blocked.bob, "bobs", "failed");
    let error = text(
        &mut blocked.bob,
        "SELECT last_error FROM webhook.backfills WHERE subscription = 'bobs'",
    )
    .unwrap_or_default();
    assert!(
        error.contains("a chunk failed 3 times in a row"),
        "bob's backfill failed for another reason: {error}"
    );
    assert_eq!(
        count(&mut blocked.su, RUNNERS),
        1,
        "the blocked runner ended"
    );
}

#[test]
fn at_most_four_runners_of_a_database_are_left_stuck_beside_a_fresh_one_until_one_ends() {
    // Each stuck runner holds a background worker slot: five owners (or one who may make
    // roles) must not take them all.
    let (port, let_go) = silent_server();
    let mut settings = SHORT_CALLBACKS.to_vec();
    settings.push("max_worker_processes = 16");
    let pg = Cluster::start(&settings);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(&mut su, "CREATE EXTENSION dblink");
    for n in 1..=5 {
        exec(
            &mut su,
            &format!(
                "CREATE ROLE o{n} LOGIN; GRANT webhook_admin TO o{n};
                 GRANT CREATE ON SCHEMA public TO o{n};"
            ),
        );
        let mut owner = pg.connect_as("postgres", &format!("o{n}"));
        exec(
            &mut owner,
            &format!(
                "CREATE TABLE t{n} (id int PRIMARY KEY);
                 CREATE FUNCTION public.hang{n}(e jsonb) RETURNS void LANGUAGE sql AS $$
                     SELECT public.dblink_connect(
                         'host=127.0.0.1 port={port} dbname=x user=x password=x') $$;"
            ),
        );
        let callback = format!(", callback => 'public.hang{n}(jsonb)'");
        let (table, path) = (format!("t{n}"), rx.url(&format!("/o{n}")));
        support::subscribe(&mut owner, &table, &table, &path, &callback);
        exec(&mut owner, &format!("INSERT INTO t{n} VALUES (1)"));
    }
    // One after another, each about 15 s after its call began.
    wait_until(
        Duration::from_secs(240),
        "the launcher to say it starts no runner beside the fifth",
        || pg.log().contains("runners stuck before it still are"),
    );
    assert_eq!(count(&mut su, RUNNERS), 5, "four abandoned and the fifth");
    assert_eq!(count(&mut su, STUCK_RUNNERS), 5, "each counted stuck");
    // The first one's connection closes: its process ends, and the fifth is abandoned in its
    // place, with a fresh runner beside it.
    let_go.store(1, Ordering::SeqCst);
    wait_until(support::WAIT, "the fifth to be abandoned", || {
        pg.log()
            .matches("starting another runner beside it")
            .count()
            == 5
    });
    let_go.store(ALL, Ordering::SeqCst);
    // Their connections closed, the calls return and the processes end; each callback is
    // called again in a fresh runner, fails at once, and is recorded.
    wait_until(support::WAIT, "every callback recorded", || {
        count(&mut su, "SELECT count(*) FROM webhook._callback_queue") == 0
    });
    wait_until(support::WAIT, "the stuck runners to end", || {
        count(&mut su, RUNNERS) == 1
    });
    assert_eq!(count(&mut su, STUCK_RUNNERS), 0, "none counted stuck");
}
