//! A transaction left open over a subscription's queued events (an unsubscribe discarding
//! them, or a superuser's lock on them) holds up no other subscription when the worker goes to
//! write those events for its own reasons: to park them (paused), to cut a grouped transaction
//! into parts, to give parked ones back (its owner may read the table again), to rebook them
//! (limits changed). Each waited for the rows until lock_timeout, failed the claim, and every
//! claim after it did the same for as long as that transaction stayed open. The events left so
//! go once it ends, each once (events put off under limits changed by hand keep the time they
//! were given: those not held go at once). One scenario per test.

mod support;

use postgres::Client;
use support::bob::orders_and_ledger;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{alter_system, count, exec, WAIT};

/// A cluster whose worker serves another database until `deliver` (poll interval 100 ms).
fn idle_cluster() -> Cluster {
    Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.database = 'elsewhere'",
    ])
}

/// The worker serves this database from now on.
fn deliver(su: &mut Client) {
    alter_system(su, "SET pg_webhook.database = 'postgres'");
}

/// A transaction (`holder`'s) left open over bob's queued events, the cluster's superuser
/// (`su`, alice's subscription's owner) and the receiver of both.
struct Held {
    pg: Cluster,
    rx: Receiver,
    su: Client,
    holder: Client,
}

impl Held {
    /// Inserts alice's event `id` and waits for it to arrive: a claim got through.
    fn alices_event_goes(&mut self, id: i32) {
        exec(&mut self.su, &format!("INSERT INTO orders VALUES ({id})"));
        wait_until(WAIT, &format!("alice's event {id}"), || {
            (self.rx.accepted().iter())
                .any(|r| r.path == "/alice" && r.json()["record"]["id"] == id)
        });
    }

    /// alice's event goes while the transaction stays open; then it rolls back.
    fn others_go_then_roll_back(&mut self) {
        self.alices_event_goes(1);
        exec(&mut self.holder, "ROLLBACK");
    }

    /// The ledger ids bob's receiver accepted, sorted (a grouped request's rows each).
    fn bobs_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = (self.rx.accepted().iter())
            .filter(|r| r.path == "/bob")
            .flat_map(|r| match r.json()["record"]["id"].as_i64() {
                Some(id) => vec![id],
                None => r.row_ids(),
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Waits for bob's events 1 to `n`, then checks (after alice's event 2, which a later
    /// claim sends) that each came once.
    fn bobs_go_once_each(&mut self, n: i64) {
        wait_until(WAIT, &format!("bob's {n} events"), || {
            self.bobs_ids().len() as i64 >= n
        });
        self.alices_event_goes(2);
        assert_eq!(self.bobs_ids(), (1..=n).collect::<Vec<i64>>(), "each once");
    }
}

/// bob's subscription (with `bobs_options`, paused if `paused`) with `rows` new events, and
/// his unsubscribe discarding them left open before the worker starts: its first claim goes to
/// write them (park them, cut their transaction).
fn discard_left_open(bobs_options: &str, paused: bool, rows: i32) -> Held {
    held_before_the_worker_starts(bobs_options, paused, rows, true)
}

/// As `discard_left_open`, but for the transaction left open: bob's unsubscribe discarding
/// his events (which holds his subscription's row too) if `discard`, else a superuser's lock
/// on his events' rows alone.
fn held_before_the_worker_starts(
    bobs_options: &str,
    paused: bool,
    rows: i32,
    discard: bool,
) -> Held {
    let pg = idle_cluster();
    let rx = Receiver::start();
    let (mut su, mut bob) = orders_and_ledger(&pg, &rx, bobs_options);
    if paused {
        exec(&mut bob, "SELECT webhook.pause('bobs')");
    }
    exec(
        &mut su,
        &format!("INSERT INTO ledger SELECT g, 't', 's' FROM generate_series(1, {rows}) g"),
    );
    let holder = if discard {
        exec(
            &mut bob,
            "BEGIN; SELECT webhook.unsubscribe('bobs', discard_queued => true)",
        );
        bob
    } else {
        lock_bobs_events(&pg, rows)
    };
    deliver(&mut su);
    Held { pg, rx, su, holder }
}

/// A superuser's transaction left open holding bob's queued events of ledger rows up to
/// `up_to`.
fn lock_bobs_events(pg: &Cluster, up_to: i32) -> Client {
    let mut holder = pg.client_with_extension();
    exec(
        &mut holder,
        &format!(
            "BEGIN; SELECT q.id FROM webhook._event_queue q \
               JOIN webhook._subscriptions s ON s.id = q.subscription_id \
              WHERE s.name = 'bobs' AND (q.record->>'id')::int <= {up_to} FOR UPDATE OF q"
        ),
    );
    holder
}

#[test]
fn a_discard_left_open_over_a_paused_subscriptions_new_events_holds_up_no_other() {
    // park.sql put the events of a subscription whose row was held off for a second: an
    // UPDATE of the rows bob's discard held.
    discard_left_open("", true, 5).others_go_then_roll_back();
}

#[test]
fn new_events_left_unparked_for_a_discard_go_once_each_when_resumed_after_it_rolls_back() {
    // The claim that could not park them passed them: they are read again once bob's
    // subscription sends, none stranded behind the cursor.
    let mut held = discard_left_open("", true, 5);
    held.others_go_then_roll_back();
    held.alices_event_goes(3);
    assert_eq!(held.bobs_ids(), Vec::<i64>::new(), "sent while paused");
    let mut bob = held.pg.connect_as("postgres", "bob");
    exec(&mut bob, "SELECT webhook.resume('bobs')");
    held.bobs_go_once_each(5);
}

/// bob's grouped subscription with a transaction of 50 events not cut yet, held before the
/// worker starts by his discard (`discard`) or a superuser's lock on its rows alone.
fn transaction_not_cut(discard: bool) -> Held {
    held_before_the_worker_starts(", group_by => 'transaction'", false, 50, discard)
}

/// Once the transaction holding them rolls back, bob's 50 events go, in one request.
fn goes_whole_once_it_rolls_back(mut held: Held) {
    held.others_go_then_roll_back();
    held.bobs_go_once_each(50);
    let bobs = (held.rx.accepted().iter())
        .filter(|r| r.path == "/bob")
        .count();
    assert_eq!(bobs, 1, "one request for bob's transaction");
}

#[test]
fn a_discard_left_open_over_a_transaction_not_cut_holds_up_no_other() {
    // The cut wrote each event's part (set_parts.sql) onto the rows bob's discard held.
    transaction_not_cut(true).others_go_then_roll_back();
}

#[test]
fn a_transaction_left_uncut_for_a_discard_goes_whole_once_it_rolls_back() {
    goes_whole_once_it_rolls_back(transaction_not_cut(true));
}

#[test]
fn a_lock_on_a_transaction_not_cut_holds_up_no_other() {
    // Its subscription's row free, the cut found the rows to write held (set_parts.sql).
    transaction_not_cut(false).others_go_then_roll_back();
}

#[test]
fn a_transaction_left_uncut_for_a_lock_goes_whole_once_it_ends() {
    goes_whole_once_it_rolls_back(transaction_not_cut(false));
}

/// bob unsubscribed (his queued events still to go) and lost SELECT on ledger: the worker
/// parked his three events. Then a superuser's transaction left open holding their rows, and
/// bob's SELECT given back: the worker goes to give them back.
fn parked_events_held_when_access_comes_back() -> Held {
    let pg = idle_cluster();
    let rx = Receiver::start();
    let (mut su, mut bob) = orders_and_ledger(&pg, &rx, "");
    exec(
        &mut su,
        "INSERT INTO ledger SELECT g, 't', 's' FROM generate_series(1, 3) g",
    );
    exec(&mut bob, "SELECT webhook.unsubscribe('bobs')");
    exec(&mut su, "REVOKE SELECT ON ledger FROM bob");
    deliver(&mut su);
    wait_until(WAIT, "bob's three events parked", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE table_name = 'ledger' AND status = 'parked'",
        ) == 3
    });
    let holder = lock_bobs_events(&pg, 3);
    exec(&mut su, "GRANT SELECT ON ledger TO bob");
    Held { pg, rx, su, holder }
}

#[test]
fn parked_events_held_when_their_owner_may_read_again_hold_up_no_other() {
    // The load that found bob's subscription sending again gave its parked events back
    // (unpark), an UPDATE of the rows the superuser's transaction held.
    parked_events_held_when_access_comes_back().others_go_then_roll_back();
}

#[test]
fn parked_events_left_for_a_lock_go_once_each_when_it_ends() {
    // Not taken for sending while some of its parked events could not be given back: the next
    // load gives them back.
    let mut held = parked_events_held_when_access_comes_back();
    held.others_go_then_roll_back();
    held.bobs_go_once_each(3);
}

/// bob's subscription at one event a second with a backlog of 200 put off for it (up to 200 s
/// ahead), a superuser's transaction left open holding the first 100 (put off the least), and
/// then his rate raised by hand: the worker goes to rebook them.
fn backlog_held_when_its_rate_changes() -> Held {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _bob) = orders_and_ledger(&pg, &rx, ", rate_limit => 1");
    exec(
        &mut su,
        "INSERT INTO ledger SELECT g, 't', 's' FROM generate_series(1, 200) g",
    );
    wait_until(WAIT, "bob's backlog put off for his rate", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._event_queue q \
               JOIN webhook._subscriptions s ON s.id = q.subscription_id \
              WHERE s.name = 'bobs' AND q.next_attempt_at > now() + interval '150 seconds'",
        ) > 0
    });
    let holder = lock_bobs_events(&pg, 100);
    exec(
        &mut su,
        "UPDATE webhook._subscriptions SET rate_limit = 1000 WHERE name = 'bobs'",
    );
    // A change by hand tells the worker nothing: it finds it as it loads the subscriptions
    // again (every 100 ms here), and says it left the events held as they were.
    wait_until(WAIT, "the worker to find the new rate", || {
        pg.log()
            .contains("the limits of subscription \"bobs\" changed")
    });
    Held { pg, rx, su, holder }
}

#[test]
fn a_backlog_held_when_its_rate_changes_holds_up_no_other() {
    // Before, the claim stalled until the last held event's old slot had passed.
    backlog_held_when_its_rate_changes().others_go_then_roll_back();
}

#[test]
fn a_rate_changed_by_hand_makes_due_the_events_no_other_transaction_holds() {
    // Events 101 to 200 had slots 100 to 200 s ahead: they go now, each once, while the held
    // ones keep theirs.
    let mut held = backlog_held_when_its_rate_changes();
    wait_until(WAIT, "bob's events 101 to 200", || {
        let ids = held.bobs_ids();
        (101..=200).all(|id| ids.contains(&id))
    });
    held.alices_event_goes(1);
    let ids = held.bobs_ids();
    let mut once = ids.clone();
    once.dedup();
    assert_eq!(ids, once, "each once");
    exec(&mut held.holder, "ROLLBACK");
}
