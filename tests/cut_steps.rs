//! A large transaction of a subscription grouped by transaction is cut into parts over several
//! claims (src/worker/cutting.rs): the worker's other subscriptions go on meanwhile, and a cut
//! stopped half-way is made again from the start. One scenario per test.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::events::parts_in_order;
use support::receiver::{Receiver, Reply, Request};
use support::{alter_system, count, exec, grouped_table, subscribe, WAIT};

/// Events of one transaction: 20 claims' worth of cutting.
const EVENTS: i64 = 100_000;
/// How long a transaction may take to cut and deliver: the scenarios run at once, each with
/// such a transaction (a debug build on 2 busy cores took most of a minute and a half).
const DRAIN_WAIT: Duration = Duration::from_secs(300);

/// Events queued with the transaction's size (the last part's: written when the cut is done).
const SIZED: &str = "SELECT count(*) FROM webhook._event_queue WHERE tx_events IS NOT NULL";

/// Sets `pg_webhook.max_payload_bytes` for the cluster and has the workers read it.
fn set_payload_limit(db: &mut postgres::Client, limit: &str) {
    alter_system(db, &format!("SET pg_webhook.max_payload_bytes = '{limit}'"));
}

/// Waits for every event of the transaction to be recorded: t's parts the receiver took.
fn recorded_parts(db: &mut postgres::Client, rx: &Receiver) -> Vec<Request> {
    wait_until(
        DRAIN_WAIT,
        "every event of the transaction recorded",
        || count(db, "SELECT count(*) FROM webhook._event_queue") == 0,
    );
    rx.accepted()
        .into_iter()
        .filter(|r| r.path == "/t")
        .collect()
}

/// Waits for every event of the transaction to be recorded and checks its parts: numbered in
/// order, each saying how many there are, every row once in statement order.
fn all_parts_in_order(db: &mut postgres::Client, rx: &Receiver) {
    let parts = recorded_parts(db, rx);
    assert_eq!(
        parts_in_order(&parts, EVENTS as u64),
        (1..=EVENTS).collect::<Vec<i64>>()
    );
}

/// Table t's subscription grouped by transaction and table u's subscribed with `u_options`,
/// on one worker; a large transaction written to t, then `u_rows` to u. Waits for u's first
/// request and checks that it came while t's transaction was still being cut, then that t's
/// parts are right. Cut in one go, a transaction held every claim of its worker until it was
/// done, and u's events went after that claim.
fn u_goes_while_t_is_cut(u_options: &str, u_rows: &str) {
    let pg = Cluster::start(&["pg_webhook.workers = 1"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(&mut db, "CREATE TABLE u (id int PRIMARY KEY)");
    subscribe(&mut db, "u", "u", &rx.url("/u"), u_options);
    exec(
        &mut db,
        &format!("INSERT INTO t SELECT g, 'x' FROM generate_series(1, {EVENTS}) g"),
    );
    exec(&mut db, &format!("INSERT INTO u {u_rows}"));
    wait_until(WAIT, "u's request", || {
        rx.accepted().iter().any(|r| r.path == "/u")
    });
    // t's events only: u's carry their own transaction's size once it is cut, if grouped.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue q JOIN webhook.subscriptions s
                 ON s.id = q.subscription_id
              WHERE s.name = 't' AND q.tx_events IS NOT NULL"
        ),
        0,
        "u's request arrived while t's transaction was still being cut"
    );
    all_parts_in_order(&mut db, &rx);
}

#[test]
fn a_large_transactions_cut_holds_up_no_other_subscription_of_its_worker() {
    u_goes_while_t_is_cut("", "VALUES (1)");
}

/// Sharing one allowance of events to cut per claim, in the subscriptions' fixed order, u's
/// transaction waited for all of t's to be cut whenever t came first.
#[test]
fn a_large_transactions_cut_holds_up_no_other_grouped_subscription_of_its_worker() {
    u_goes_while_t_is_cut(
        ", group_by => 'transaction'",
        "SELECT generate_series(1, 10)",
    );
}

#[test]
fn a_cut_stopped_half_way_by_its_workers_end_is_made_again_from_the_start() {
    let pg = Cluster::start(&["pg_webhook.workers = 1"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    let worker = pg.worker_pid(&mut db);
    exec(
        &mut db,
        &format!("INSERT INTO t SELECT g, 'x' FROM generate_series(1, {EVENTS}) g"),
    );
    // More than the 5,000 events the worker looks for transactions among: the next worker finds
    // only events with parts there, as if the transaction were cut.
    wait_until(WAIT, "10,000 events cut", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE part IS NOT NULL",
        ) >= 10_000
    });
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    wait_until(WAIT, "the worker to end", || {
        count(
            &mut db,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {worker}"),
        ) == 0
    });
    assert_eq!(count(&mut db, SIZED), 0, "the cut was stopped half-way");
    all_parts_in_order(&mut db, &rx);
}

/// A member pausing and resuming faster than the transaction is cut: the cut goes on at each
/// resume from where it stopped (forgotten at each pause, it started again from the first event
/// every time and never ended).
#[test]
fn pausing_and_resuming_over_and_over_does_not_keep_a_transaction_from_being_cut() {
    let pg = Cluster::start(&["pg_webhook.workers = 1"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        &format!("INSERT INTO t SELECT g, 'x' FROM generate_series(1, {EVENTS}) g"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut member = pg.connect("postgres");
    let pauser = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::SeqCst) {
                exec(&mut member, "SELECT webhook.pause('t')");
                std::thread::sleep(Duration::from_millis(300));
                exec(&mut member, "SELECT webhook.resume('t')");
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    });
    wait_until(DRAIN_WAIT, "the transaction cut", || {
        count(&mut db, SIZED) > 0
    });
    stop.store(true, Ordering::SeqCst);
    pauser.join().expect("the pausing thread");
    all_parts_in_order(&mut db, &rx);
}

/// Table t's subscription grouped by transaction, retrying after a second, whose receiver fails
/// part 2 the first time; a large transaction written to t, cut under the 1 MB default limit;
/// once part 2 failed, the limit lowered to 256 kB, so that part 2's retry finds it over the
/// limit and what is left of the transaction is cut again from part 2 on. Waits until that cut
/// again has begun (the transaction's last event has its size made negative meanwhile).
fn cut_again_from_part_2(u: bool) -> (Cluster, Receiver, postgres::Client) {
    let pg = Cluster::start(&["pg_webhook.workers = 1"]);
    let failed = Arc::new(AtomicBool::new(false));
    let rx = Receiver::with({
        let failed = failed.clone();
        move |r, _| match r.json()["transaction"]["part"].as_u64() {
            Some(2) if !failed.swap(true, Ordering::SeqCst) => Reply::Status(503),
            _ => Reply::Status(200),
        }
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['1 second']::interval[]",
    );
    if u {
        exec(&mut db, "CREATE TABLE u (id int PRIMARY KEY)");
        subscribe(&mut db, "u", "u", &rx.url("/u"), "");
    }
    exec(
        &mut db,
        &format!("INSERT INTO t SELECT g, 'x' FROM generate_series(1, {EVENTS}) g"),
    );
    wait_until(WAIT, "part 2 failed", || failed.load(Ordering::SeqCst));
    set_payload_limit(&mut db, "256kB");
    wait_until(WAIT, "the cut again under way", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE tx_events < 0",
        ) > 0
    });
    (pg, rx, db)
}

/// Checks t's parts once every event is recorded: in order, the first ones as first cut, the
/// rest (from part 2, or a later one should part 2's retry have come before the new limit) as
/// cut again, each saying how many there are now and within the new limit; every one telling
/// the transaction's size, every row once in statement order.
fn parts_cut_again_in_order(db: &mut postgres::Client, rx: &Receiver) {
    let parts = recorded_parts(db, rx);
    let now = parts.len() as u64;
    let first_cut = parts[0].json()["transaction"]["parts"].clone();
    let again = (parts.iter()).position(|r| r.json()["transaction"]["parts"] == now);
    assert!(
        again.is_some_and(|i| i >= 1),
        "parts as first cut, then as cut again"
    );
    let mut ids = Vec::new();
    for (i, r) in parts.iter().enumerate() {
        let tx = &r.json()["transaction"];
        assert_eq!(tx["part"], i as u64 + 1, "parts arrive in order: {tx}");
        assert_eq!(tx["events_total"], EVENTS as u64, "{tx}");
        if Some(i) < again {
            assert_eq!(tx["parts"], first_cut, "{tx}");
        } else {
            assert_eq!(tx["parts"], now, "{tx}");
            assert!(r.body.len() <= 256 * 1024, "a {}-byte part", r.body.len());
        }
        ids.extend(r.row_ids());
    }
    assert_eq!(ids, (1..=EVENTS).collect::<Vec<i64>>());
}

/// Cut again in one go, what was left of the transaction held every claim of its worker.
#[test]
fn a_transaction_cut_again_under_a_lowered_limit_holds_up_no_other_subscription() {
    let (_pg, rx, mut db) = cut_again_from_part_2(true);
    exec(&mut db, "INSERT INTO u VALUES (1)");
    wait_until(WAIT, "u's event", || {
        rx.accepted().iter().any(|r| r.path == "/u")
    });
    assert!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE tx_events < 0"
        ) > 0,
        "u's event arrived while t's transaction was still being cut again"
    );
    parts_cut_again_in_order(&mut db, &rx);
}

#[test]
fn a_cut_again_stopped_half_way_by_its_workers_end_is_made_again_from_its_part() {
    let (pg, rx, mut db) = cut_again_from_part_2(false);
    let worker = pg.worker_pid(&mut db);
    exec(&mut db, &format!("SELECT pg_terminate_backend({worker})"));
    parts_cut_again_in_order(&mut db, &rx);
}

/// The limit raised while the transaction is cut again, and lowered back once it is: the cut
/// again went on under the limit it began with, so every part of it is within the lowered one
/// and none dies. (Each step cut under the limit of the moment: the parts after the raise were
/// cut larger, and a part of the first cut's size could be taken for one cut again under the
/// lowered limit and still over it, and die.)
#[test]
fn a_limit_raised_during_a_cut_again_and_lowered_back_kills_no_part() {
    let (_pg, rx, mut db) = cut_again_from_part_2(false);
    set_payload_limit(&mut db, "1MB");
    wait_until(WAIT, "the cut again done", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook._event_queue WHERE tx_events < 0",
        ) == 0
    });
    set_payload_limit(&mut db, "256kB");
    parts_cut_again_in_order(&mut db, &rx);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        0
    );
}
