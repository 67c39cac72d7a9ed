//! Access lost and given back while the worker claims: events held for an owner who may not
//! read the table go once it may again, whichever step of a claim saw the change. One
//! scenario per test. (Access lost for good: tests/lost_access.rs.)

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::bob::bob_reads_ledger;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, exec, subscribe, LONG_WAIT, WAIT};

const ROWS: i64 = 1000;

/// Whether the session with backend `pid` waits for a lock another holds.
fn blocked(db: &mut postgres::Client, pid: i32) -> bool {
    db.query_one(
        "SELECT cardinality(pg_catalog.pg_blocking_pids($1)) > 0",
        &[&pid],
    )
    .expect("reading pg_blocking_pids")
    .get(0)
}

#[test]
fn an_unsubscribed_subscriptions_events_parked_by_a_revoke_go_once_its_owner_may_read_again() {
    // A claim checks its events' owners' access again after reading them, later than its load
    // of the subscriptions: a REVOKE committed in between parked the events it read of an
    // unsubscribed subscription draining its backlog. That subscription was still counted as
    // sending, so the load that found the GRANT gave nothing back, and resume() refuses an
    // unsubscribed one: they stayed parked until the worker restarted.
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 2"]);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(20), 204));
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    exec(
        &mut su,
        "CREATE TABLE other (id int PRIMARY KEY); GRANT SELECT, TRIGGER ON other TO bob",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "drain", "ledger", &rx.url("/drain"), "");
    subscribe(&mut bob, "held", "other", &rx.url("/held"), "");
    exec(
        &mut bob,
        "SELECT webhook.pause('drain'); SELECT webhook.pause('held')",
    );
    exec(
        &mut su,
        &format!("INSERT INTO ledger SELECT g, 'a', 's' FROM generate_series(1, {ROWS}) g"),
    );
    exec(&mut bob, "SELECT webhook.unsubscribe('drain')");
    // The next load stops on held's row (it notes that bob may no longer read `other`), with
    // drain loaded as sending; meanwhile bob loses `ledger` too.
    let mut row_lock = pg.connect("postgres");
    exec(
        &mut row_lock,
        "BEGIN; SELECT 1 FROM webhook._subscriptions WHERE name = 'held' FOR UPDATE",
    );
    let row_lock_pid: i32 = row_lock
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("the row lock's pid")
        .get(0);
    exec(&mut su, "REVOKE SELECT ON other FROM bob");
    wait_until(WAIT, "the worker's load to wait for held's row", || {
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE {row_lock_pid} = ANY (pg_blocking_pids(pid))"
            ),
        ) > 0
    });
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    // The load after this claim waits until bob may read `ledger` again.
    let mut gate = pg.connect("postgres");
    let gate_pid: i32 = gate
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("the gate's pid")
        .get(0);
    let gate_thread = std::thread::spawn(move || -> Result<(), String> {
        let step = |db: &mut postgres::Client, sql: &str| {
            db.batch_execute(sql).map_err(|e| format!("{sql}: {e}"))
        };
        step(
            &mut gate,
            "BEGIN; LOCK TABLE webhook._subscriptions IN ACCESS EXCLUSIVE MODE",
        )?;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let parked: i64 = gate
                .query_one(
                    "SELECT count(*) FROM webhook._event_queue q
                       JOIN webhook._subscriptions s ON s.id = q.subscription_id
                      WHERE s.name = 'drain' AND q.next_attempt_at = 'infinity'",
                    &[],
                )
                .map_err(|e| format!("counting parked events: {e}"))?
                .get(0);
            if parked > 0 {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err("the claim parked none of drain's events".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        step(&mut gate, "GRANT SELECT ON ledger TO bob; COMMIT")
    });
    wait_until(WAIT, "the gate to wait behind the claim", || {
        blocked(&mut su, gate_pid)
    });
    exec(&mut row_lock, "COMMIT");
    gate_thread
        .join()
        .expect("the gate's thread")
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(LONG_WAIT, "every row of drain's backlog", || {
        let ids: HashSet<i64> = rx.accepted_ids().into_iter().collect();
        ids.len() as i64 == ROWS
    });
}
