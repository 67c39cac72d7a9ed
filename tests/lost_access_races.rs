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

const ROWS: i64 = 4000;

/// Whether the session with backend `pid` waits for a lock another holds.
fn blocked(db: &mut postgres::Client, pid: i32) -> bool {
    db.query_one(
        "SELECT cardinality(pg_catalog.pg_blocking_pids($1)) > 0",
        &[&pid],
    )
    .expect("reading pg_blocking_pids")
    .get(0)
}

/// Holds webhook._event_queue in `lock` until the worker's claim waits for it, having loaded
/// the subscriptions (it holds its lock on webhook._subscriptions): no claim reads the queue
/// before the queue's lock is granted, so the claim stands between its load and its first
/// read of the queue. A record, or a claim that did not load, is let through and waited for
/// again.
fn stop_a_claim_after_its_load(lock: &mut postgres::Client, su: &mut postgres::Client) {
    let lock_pid: i32 = lock
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("the queue lock's pid")
        .get(0);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        exec(
            lock,
            "BEGIN; LOCK TABLE webhook._event_queue IN ACCESS EXCLUSIVE MODE",
        );
        wait_until(WAIT, "the worker to wait for the queue", || {
            count(
                su,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE backend_type = 'pg_webhook'
                        AND {lock_pid} = ANY (pg_blocking_pids(pid))"
                ),
            ) > 0
        });
        let loaded = count(
            su,
            &format!(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                  WHERE a.backend_type = 'pg_webhook' AND a.query = 'claiming due events'
                    AND {lock_pid} = ANY (pg_blocking_pids(a.pid))
                    AND l.relation = 'webhook._subscriptions'::regclass AND l.granted"
            ),
        );
        if loaded > 0 {
            return;
        }
        exec(lock, "ROLLBACK");
        assert!(
            std::time::Instant::now() < deadline,
            "no claim that loaded the subscriptions waited for the queue"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_unsubscribed_subscriptions_events_parked_by_a_revoke_go_once_its_owner_may_read_again() {
    // A claim checks its events' owners' access again after reading them, later than its load
    // of the subscriptions: a REVOKE committed in between parked the events it read of an
    // unsubscribed subscription draining its backlog. That subscription was still counted as
    // sending, so the load that found the GRANT gave nothing back, and resume() refuses an
    // unsubscribed one: they stayed parked until the worker restarted.
    // Room for a few requests at each claim: a claim with room for one that keeps it for due
    // events reads no new event.
    let pg = Cluster::start(&["pg_webhook.workers = 1", "pg_webhook.max_in_flight = 8"]);
    let rx = Receiver::with(|_, _| Reply::Delay(Duration::from_millis(50), 204));
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "drain", "ledger", &rx.url("/drain"), "");
    exec(&mut bob, "SELECT webhook.pause('drain')");
    exec(
        &mut su,
        &format!("INSERT INTO ledger SELECT g, 'a', 's' FROM generate_series(1, {ROWS}) g"),
    );
    exec(&mut bob, "SELECT webhook.unsubscribe('drain')");
    // A claim stands between its load, which found drain sending, and its read of the queue;
    // meanwhile bob loses `ledger`. (Again if that claim read none of drain's events.)
    let mut queue_lock = pg.connect("postgres");
    let parked = (0..5).any(|_| revoked_while_a_claim_stands(&pg, &mut queue_lock, &mut su));
    assert!(parked, "no claim parked drain's events in 5 tries");
    wait_until(LONG_WAIT, "every row of drain's backlog", || {
        let ids: HashSet<i64> = rx.accepted_ids().into_iter().collect();
        ids.len() as i64 == ROWS
    });
}

/// Stops a claim after its load, revokes bob's SELECT on `ledger` and holds the next load
/// (webhook._subscriptions locked) until that claim parked some of drain's events or 5 s
/// passed, then grants it back: whether it parked some.
fn revoked_while_a_claim_stands(
    pg: &Cluster,
    queue_lock: &mut postgres::Client,
    su: &mut postgres::Client,
) -> bool {
    stop_a_claim_after_its_load(queue_lock, su);
    exec(su, "REVOKE SELECT ON ledger FROM bob");
    let mut gate = pg.connect("postgres");
    let gate_pid: i32 = gate
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("the gate's pid")
        .get(0);
    let gate_thread = std::thread::spawn(move || -> Result<bool, String> {
        let step = |db: &mut postgres::Client, sql: &str| {
            db.batch_execute(sql).map_err(|e| format!("{sql}: {e}"))
        };
        step(
            &mut gate,
            "BEGIN; LOCK TABLE webhook._subscriptions IN ACCESS EXCLUSIVE MODE",
        )?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let parked = loop {
            let parked: i64 = gate
                .query_one(
                    "SELECT count(*) FROM webhook._event_queue q
                       JOIN webhook._subscriptions s ON s.id = q.subscription_id
                      WHERE s.name = 'drain' AND q.next_attempt_at = 'infinity'",
                    &[],
                )
                .map_err(|e| format!("counting parked events: {e}"))?
                .get(0);
            if parked > 0 || std::time::Instant::now() > deadline {
                break parked > 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        step(&mut gate, "GRANT SELECT ON ledger TO bob; COMMIT")?;
        Ok(parked)
    });
    wait_until(WAIT, "the gate to wait behind the claim", || {
        blocked(su, gate_pid)
    });
    exec(queue_lock, "ROLLBACK");
    gate_thread
        .join()
        .expect("the gate's thread")
        .unwrap_or_else(|e| panic!("{e}"))
}
