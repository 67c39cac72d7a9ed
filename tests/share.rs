//! A worker's requests, and the callback runner's time, shared between subscriptions: an
//! endpoint that stops answering (or answers slowly) cannot take all of them, and none of its
//! events is lost for it; one subscription's (or one owner's) slow callbacks take turns with
//! the others'.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, subscribe};

/// One worker with 8 requests; table `table` subscribed to `slow` with `options` (after a
/// comma), table `quick` to `quick`. Returns the slow subscription's id.
fn beside_a_quick_one(
    table: &str,
    slow: &Receiver,
    options: &str,
    quick: &Receiver,
) -> (Cluster, Client, i32) {
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let mut db = pg.client_with_extension();
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY); CREATE TABLE quick (id int PRIMARY KEY)"
    ))
    .unwrap();
    let (id, _) = subscribe(
        &mut db,
        table,
        table,
        &slow.url("/slow"),
        &format!(", {options}"),
    );
    subscribe(&mut db, "quick", "quick", &quick.url("/quick"), "");
    (pg, db, id)
}

/// Once the hung receiver has 6 requests, a new event of table `quick` is sent, and the hung
/// one never had more than 6 (a quarter of the worker's 8 are kept for the others).
fn goes_beside_six_hung_requests(db: &mut Client, hung: &Receiver, quick: &Receiver) {
    wait_until(support::WAIT, "the hung receiver's requests", || {
        hung.count() >= 6
    });
    db.batch_execute("INSERT INTO quick VALUES (1)").unwrap();
    wait_until(support::WAIT, "the other subscription's event", || {
        quick.count() == 1
    });
    assert_eq!(hung.peak_concurrency(), 6);
}

#[test]
fn an_endpoint_that_keeps_requests_waiting_leaves_room_for_the_others() {
    // One worker with 8 requests. A receiver that answers after two minutes (within its
    // subscription's timeout) took all 8 with its backlog, and the other subscription's event
    // waited behind it for minutes.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let (_pg, mut db, _) = beside_a_quick_one("hung", &hung, "timeout => '3 minutes'", &quick);
    db.batch_execute("INSERT INTO hung SELECT generate_series(1, 100)")
        .unwrap();
    goes_beside_six_hung_requests(&mut db, &hung, &quick);
}

#[test]
fn a_keyed_subscription_holding_its_share_leaves_room_for_transactions() {
    // The room a subscription grouped by transaction is read for was what the others' events
    // left of it, counting a keyed subscription's heads in flight and those its share turns
    // away: none of the transaction's parts went until the hung requests ended.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let options = "timeout => '3 minutes', order_key => ARRAY['id']";
    let (_pg, mut db, _) = beside_a_quick_one("hung", &hung, options, &quick);
    db.batch_execute("CREATE TABLE grouped (id int PRIMARY KEY)")
        .unwrap();
    let url = quick.url("/grouped");
    subscribe(
        &mut db,
        "grouped",
        "grouped",
        &url,
        ", group_by => 'transaction'",
    );
    db.batch_execute("INSERT INTO hung SELECT generate_series(1, 50)")
        .unwrap();
    wait_until(support::WAIT, "the hung receiver's requests", || {
        hung.count() >= 6
    });
    db.batch_execute("INSERT INTO grouped VALUES (1)").unwrap();
    wait_until(support::WAIT, "the transaction's request", || {
        quick.count() == 1
    });
}

#[test]
fn events_passed_while_an_endpoint_was_slow_are_all_delivered() {
    // The cursor passes a slow subscription's new events (another subscription's come after
    // them in the queue) and reads them again as its requests end: every one must arrive.
    // Both subscriptions' events are interleaved, one transaction each, so the passed events'
    // stretch of the queue holds the other's too.
    let slow = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(1500), 204));
    let quick = Receiver::start();
    let (_pg, mut db, slow_id) =
        beside_a_quick_one("slow", &slow, "timeout => '10 seconds'", &quick);
    for round in 0..6 {
        db.batch_execute(&format!(
            "INSERT INTO slow SELECT generate_series({0} * 10 + 1, {0} * 10 + 10);
             INSERT INTO quick VALUES ({0})",
            round
        ))
        .unwrap();
    }
    wait_until(support::LONG_WAIT, "every slow event delivered", || {
        slow.accepted_ids()
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 60
    });
    let expected: BTreeSet<i64> = (1..=60).collect();
    let got: BTreeSet<i64> = slow.accepted_ids().into_iter().collect();
    assert_eq!(got, expected);
    let quick_ids: BTreeSet<i64> = quick.accepted_ids().into_iter().collect();
    assert_eq!(quick_ids, (0..6).collect::<BTreeSet<i64>>());
    assert!(
        slow.peak_concurrency() <= 6,
        "the slow endpoint had {} requests at once",
        slow.peak_concurrency()
    );
    wait_until(support::WAIT, "the slow subscription's queue empty", || {
        count(
            &mut db,
            &format!("SELECT count(*) FROM webhook.events WHERE subscription_id = {slow_id} AND status <> 'delivered'"),
        ) == 0
    });
}

#[test]
fn a_transaction_subscription_that_keeps_requests_waiting_leaves_room_for_the_others() {
    // Grouped by transaction, each request is a transaction's part: 20 transactions' parts
    // took all 8 requests.
    let hung = Receiver::with(|_, _| Reply::Delay(Duration::from_secs(120), 204));
    let quick = Receiver::start();
    let options = "timeout => '3 minutes', group_by => 'transaction'";
    let (_pg, mut db, _) = beside_a_quick_one("hung", &hung, options, &quick);
    for n in 1..=20 {
        db.batch_execute(&format!("INSERT INTO hung VALUES ({n})"))
            .unwrap();
    }
    goes_beside_six_hung_requests(&mut db, &hung, &quick);
}

#[test]
fn a_subscriptions_slow_callbacks_take_turns_with_the_others() {
    // The runner read 50 callbacks at a time, oldest first, and ran them all: a callback
    // queued behind 30 slow ones of another subscription waited for every one of them. Each
    // slow one here takes over a second, so every batch stops after one of them.
    let pg = Cluster::start(&["pg_webhook.callback_timeout = '2s'"]);
    let mut db = pg.client_with_extension();
    db.batch_execute(
        "CREATE TABLE slow (id int PRIMARY KEY); CREATE TABLE quick (id int PRIMARY KEY);
         CREATE TABLE ran (n serial PRIMARY KEY, who text NOT NULL);
         CREATE FUNCTION public.slow_callback(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.ran (who) VALUES ('slow');
             PERFORM pg_catalog.pg_sleep(1.1);
         END $$;
         CREATE FUNCTION public.quick_callback(event jsonb) RETURNS void LANGUAGE sql AS
             $$ INSERT INTO public.ran (who) VALUES ('quick') $$;",
    )
    .unwrap();
    let rx = Receiver::start();
    subscribe(
        &mut db,
        "slow",
        "slow",
        &rx.url("/slow"),
        ", callback => 'public.slow_callback(jsonb)'",
    );
    subscribe(
        &mut db,
        "quick",
        "quick",
        &rx.url("/quick"),
        ", callback => 'public.quick_callback(jsonb)'",
    );
    db.batch_execute("INSERT INTO slow SELECT generate_series(1, 30)")
        .unwrap();
    wait_until(support::WAIT, "the slow callbacks to begin", || {
        count(&mut db, "SELECT count(*) FROM ran") > 0
    });
    db.batch_execute("INSERT INTO quick VALUES (1)").unwrap();
    wait_until(support::WAIT, "the quick callback", || {
        count(&mut db, "SELECT count(*) FROM ran WHERE who = 'quick'") == 1
    });
    let slow_before = count(
        &mut db,
        "SELECT count(*) FROM ran WHERE who = 'slow'
            AND n < (SELECT n FROM ran WHERE who = 'quick')",
    );
    // A batch runs a second (one of these) before the runner reads again, and the next turn
    // starts after the subscription that ran last: the quick one's callback is next.
    assert!(
        slow_before <= 3,
        "{slow_before} slow callbacks ran before the quick one"
    );
}

#[test]
fn an_owners_slow_callbacks_take_turns_with_another_owners() {
    // Callbacks of different owners never share a runner process: a runner calls one owner's
    // for about a second while others wait, then hands over to a fresh process for the next
    // owner. alice's 30 slow callbacks (over a second each) must not hold bob's up for all of
    // them, nor may bob's run in a process that ran alice's.
    let pg = Cluster::start(&["pg_webhook.callback_timeout = '2s'"]);
    let mut su = pg.client_with_extension();
    su.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
         GRANT webhook_admin TO alice, bob;
         GRANT CREATE ON SCHEMA public TO alice, bob;
         CREATE TABLE ran (n serial PRIMARY KEY, who text NOT NULL, pid int NOT NULL);
         GRANT INSERT ON ran TO alice, bob; GRANT USAGE ON SEQUENCE ran_n_seq TO alice, bob;",
    )
    .unwrap();
    let mut alice = pg.connect_as("postgres", "alice");
    alice
        .batch_execute(
            "CREATE TABLE slow (id int PRIMARY KEY);
             CREATE FUNCTION public.slow_callback(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO public.ran (who, pid) VALUES ('alice', pg_catalog.pg_backend_pid());
                 PERFORM pg_catalog.pg_sleep(1.1);
             END $$;",
        )
        .unwrap();
    let mut bob = pg.connect_as("postgres", "bob");
    bob.batch_execute(
        "CREATE TABLE quick (id int PRIMARY KEY);
         CREATE FUNCTION public.quick_callback(event jsonb) RETURNS void LANGUAGE sql AS
             $$ INSERT INTO public.ran (who, pid) VALUES ('bob', pg_catalog.pg_backend_pid()) $$;",
    )
    .unwrap();
    let rx = Receiver::start();
    subscribe(
        &mut alice,
        "slow",
        "slow",
        &rx.url("/slow"),
        ", callback => 'public.slow_callback(jsonb)'",
    );
    subscribe(
        &mut bob,
        "quick",
        "quick",
        &rx.url("/quick"),
        ", callback => 'public.quick_callback(jsonb)'",
    );
    alice
        .batch_execute("INSERT INTO slow SELECT generate_series(1, 30)")
        .unwrap();
    wait_until(support::WAIT, "alice's callbacks to begin", || {
        count(&mut su, "SELECT count(*) FROM ran") > 0
    });
    bob.batch_execute("INSERT INTO quick SELECT generate_series(1, 5)")
        .unwrap();
    wait_until(support::WAIT, "bob's callbacks", || {
        count(&mut su, "SELECT count(*) FROM ran WHERE who = 'bob'") == 5
    });
    let alice_before = count(
        &mut su,
        "SELECT count(*) FROM ran WHERE who = 'alice'
            AND n < (SELECT min(n) FROM ran WHERE who = 'bob')",
    );
    assert!(
        alice_before <= 3,
        "{alice_before} of alice's slow callbacks ran before bob's first"
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM ran a JOIN ran b USING (pid) WHERE a.who = 'alice' AND b.who = 'bob'",
        ),
        0,
        "alice's and bob's callbacks ran in the same process"
    );
}

/// Pauses subscription `name` (of table `name`), writes `rows` rows and waits until the worker
/// has parked their events.
fn parked_backlog(db: &mut Client, name: &str, rows: i64) {
    db.batch_execute(&format!(
        "SELECT webhook.pause('{name}'); INSERT INTO {name} SELECT generate_series(1, {rows})"
    ))
    .unwrap();
    wait_until(
        support::WAIT,
        "the paused subscription's events parked",
        || {
            count(
                db,
                "SELECT count(*) FROM webhook._event_queue WHERE next_attempt_at = 'infinity'",
            ) == rows
        },
    );
}

#[test]
fn a_resumed_subscriptions_backlog_goes_on_as_requests_end() {
    // Resumed, a subscription's parked events are due retries. Held at its share (6 of the
    // worker's 8 requests), the due events left were read again only a second later, even
    // though the receiver answered at once: 6 events a second, 100 s for these 600 (so too the
    // retries of an endpoint back from an outage).
    let rx = Receiver::start();
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let mut db = pg.client_with_extension();
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "t", "t", &rx.url("/t"), "");
    parked_backlog(&mut db, "t", 600);
    db.batch_execute("SELECT webhook.resume('t')").unwrap();
    wait_until(support::WAIT, "the resumed backlog", || rx.count() >= 600);
    assert_eq!(rx.count(), 600);
}

/// One worker with 4 requests (a share of 3): table `busy` subscribed to an endpoint that
/// answers in 300 ms (never slow), table `b` to one that fails its first request, retried 2 s
/// later. Returns the cluster, a client, and the two receivers.
fn busy_beside_a_retry() -> (Cluster, Client, Receiver, Receiver) {
    let busy = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(300), 204));
    let failing_once = Receiver::with(|_, n| Reply::Status(if n == 0 { 503 } else { 204 }));
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 4"]);
    let mut db = pg.client_with_extension();
    db.batch_execute("CREATE TABLE busy (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&mut db, "busy", "busy", &busy.url("/busy"), "");
    subscribe(
        &mut db,
        "b",
        "b",
        &failing_once.url("/b"),
        ", retry_schedule => ARRAY['2 seconds']::interval[]",
    );
    (pg, db, busy, failing_once)
}

#[test]
fn a_due_retry_goes_while_another_subscription_holds_its_share() {
    // 4 requests: a subscription whose endpoint answers in 300 ms (never slow) holds 3 with a
    // long backlog, and its next event, read again each claim, was counted against the one
    // request left: the other subscription's retry was never read (for the whole backlog,
    // 100 s here) and the worker claimed every millisecond.
    let (_pg, mut db, busy, failing_once) = busy_beside_a_retry();
    db.batch_execute("INSERT INTO b VALUES (1)").unwrap();
    wait_until(support::WAIT, "the first attempt", || {
        failing_once.count() == 1
    });
    db.batch_execute("INSERT INTO busy SELECT generate_series(1, 1000)")
        .unwrap();
    wait_until(support::WAIT, "the retry", || failing_once.count() >= 2);
    assert!(busy.count() < 1000, "the backlog was still going");
}

#[test]
fn a_due_retry_goes_past_another_subscriptions_due_backlog() {
    // Due events are read in the order they came due: a resumed subscription's 1,000 parked
    // events came due before the other's retry, and with that subscription holding its share
    // (3 of 4 requests, answered in 300 ms) every read returned only its events, the retry
    // behind them until the backlog was gone (100 s here).
    let (_pg, mut db, busy, failing_once) = busy_beside_a_retry();
    parked_backlog(&mut db, "busy", 1000);
    db.batch_execute("SELECT webhook.resume('busy')").unwrap();
    wait_until(support::WAIT, "the resumed backlog to go", || {
        busy.count() >= 3
    });
    db.batch_execute("INSERT INTO b VALUES (1)").unwrap();
    wait_until(support::WAIT, "the first attempt", || {
        failing_once.count() == 1
    });
    wait_until(support::WAIT, "the retry", || failing_once.count() >= 2);
    assert!(busy.count() < 1000, "the backlog was still going");
}
