//! A copy of a database restored from its dump, running beside the original, never sends the
//! original's webhook-ids: the dump keeps the subscriptions' uids and the event id sequence, so
//! the copy's first event was `msg_<uid>_<id>` exactly as the original's next one, to the same
//! receiver, and a receiver de-duplicating on webhook-ids (as it should) dropped one of them.
//! So does a database made from another as its template. A physical standby, once promoted, is
//! the same database and keeps them; the events it captures after the promotion, on a new WAL
//! timeline, name that timeline in their webhook-ids: an asynchronous standby may lack the
//! event ids the old primary handed out (and sent) last, and hand them out again.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{exec, subscribe, text, WAIT};

fn uid(db: &mut postgres::Client) -> String {
    text(
        db,
        "SELECT uid FROM webhook.subscriptions WHERE name = 'orders'",
    )
    .unwrap_or_default()
}

/// The webhook-id prefix (`msg_<uid>_`) of each accepted request, sorted.
fn prefixes(rx: &Receiver, n: usize) -> Vec<String> {
    let mut got: Vec<String> = rx
        .wait_for(n, WAIT)
        .iter()
        .map(|r| {
            let id = r.id();
            id[..id.rfind('_').unwrap_or(id.len())].to_string()
        })
        .collect();
    got.sort();
    got
}

#[test]
fn a_restored_copy_beside_its_original_sends_webhook_ids_of_its_own() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut original = pg.client_with_extension();
    exec(&mut original, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut original, "orders", "orders", &rx.url("/orders"), "");
    let before = uid(&mut original);
    let dump = pg.dir.join("app.dump");
    let dump = dump.to_str().expect("a UTF-8 path");
    pg.tool("pg_dump", &["-Fc", "-d", "postgres", "-f", dump]);
    exec(&mut original, "CREATE DATABASE staging");
    pg.tool("pg_restore", &["--exit-on-error", "-d", "staging", dump]);
    let mut copy = pg.connect("staging");
    wait_until(WAIT, "the copy's worker to renew the uid", || {
        uid(&mut copy) != before
    });
    exec(&mut original, "INSERT INTO orders VALUES (1)");
    exec(&mut copy, "INSERT INTO orders VALUES (1)");
    let renewed = uid(&mut copy);
    let mut want = vec![format!("msg_{before}"), format!("msg_{renewed}")];
    want.sort();
    assert_eq!(prefixes(&rx, 2), want);
    assert_eq!(uid(&mut original), before, "the original keeps its uid");
    assert!(
        pg.log()
            .contains("was made in another copy of this database"),
        "the copy's worker says why the uid changed"
    );
}

#[test]
fn a_promoted_standby_keeps_the_webhook_ids_of_its_primary() {
    let primary = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = primary.client_with_extension();
    exec(&mut db, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let before = uid(&mut db);
    exec(&mut db, "INSERT INTO orders VALUES (1)");
    assert_eq!(prefixes(&rx, 1), vec![format!("msg_{before}")]);
    let standby = primary.make_standby("standby");
    wait_until(WAIT, "the standby to replay the subscription", || {
        uid(&mut standby.connect("postgres")) == before
    });
    primary.stop("fast");
    standby.promote();
    let mut promoted = standby.connect("postgres");
    exec(&mut promoted, "INSERT INTO orders VALUES (2)");
    let got = prefixes(&rx, 2);
    assert_eq!(got, vec![format!("msg_{before}"), format!("msg_{before}")]);
    assert_eq!(uid(&mut promoted), before);
}

/// Inserts rows `from..from + n` into orders, one transaction (and one event id block) each.
fn insert_one_by_one(db: &mut postgres::Client, from: i32, n: i32) {
    for id in from..from + n {
        exec(db, &format!("INSERT INTO orders VALUES ({id})"));
    }
}

/// A primary whose table orders has a subscription (made with `extra`) and an asynchronous
/// standby that stops receiving WAL; the primary captures and sends 100 events, one
/// transaction each (its event id sequence logs ahead every 32 blocks, and its transaction ids
/// move on: records the standby never gets), then fails, and the promoted standby captures 100
/// more. Returns the subscription's uid, the webhook-ids the primary sent and every webhook-id
/// received, in order.
fn failover_after_an_unreplicated_tail(extra: &str) -> (String, Vec<String>, Vec<String>) {
    let primary = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = primary.client_with_extension();
    exec(&mut db, "CREATE TABLE orders (id int PRIMARY KEY)");
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), extra);
    let uid_before = uid(&mut db);
    let standby = primary.make_standby("standby");
    wait_until(WAIT, "the standby to replay the subscription", || {
        uid(&mut standby.connect("postgres")) == uid_before
    });
    standby.append_conf("primary_conninfo = ''");
    standby.reload();
    wait_until(WAIT, "the standby to stop streaming", || {
        text(&mut db, "SELECT count(*)::text FROM pg_stat_replication").as_deref() == Some("0")
    });
    insert_one_by_one(&mut db, 1, 100);
    let sent: Vec<String> = rx.wait_for(100, WAIT).iter().map(|r| r.id()).collect();
    primary.stop("immediate");
    standby.promote();
    insert_one_by_one(&mut standby.connect("postgres"), 1, 100);
    let all: Vec<String> = rx.wait_for(200, WAIT).iter().map(|r| r.id()).collect();
    (uid_before, sent, all)
}

/// The webhook-ids of `all` that are not in `sent`, checked to be 100 and all distinct.
fn new_and_distinct(sent: &[String], all: &[String]) -> Vec<String> {
    let mut distinct = all.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 200, "no webhook-id repeats: {all:?}");
    let after: Vec<String> = all
        .iter()
        .filter(|id| !sent.contains(id))
        .cloned()
        .collect();
    assert_eq!(after.len(), 100);
    after
}

#[test]
fn a_promoted_standby_never_repeats_the_webhook_ids_its_old_primary_sent_last() {
    // The promoted standby's event id sequence starts from what it had: its events must not
    // go out under webhook-ids a receiver has already seen (it would drop them as repeats).
    let (uid, sent, all) = failover_after_an_unreplicated_tail("");
    let after = new_and_distinct(&sent, &all);
    for id in &sent {
        assert!(!id.contains('.'), "timeline 1 names no timeline: {id}");
    }
    for id in &after {
        assert!(
            id.starts_with(&format!("msg_{uid}_")) && id.ends_with(".2"),
            "the promoted standby's events name timeline 2: {id}"
        );
    }
}

#[test]
fn a_promoted_standby_never_repeats_the_transaction_webhook_ids_its_old_primary_sent_last() {
    // Its transaction ids start from what it had too.
    let (uid, sent, all) = failover_after_an_unreplicated_tail(", group_by => 'transaction'");
    let after = new_and_distinct(&sent, &all);
    for id in &after {
        assert!(
            id.starts_with(&format!("msg_{uid}_t")) && id.ends_with(".2_1"),
            "the promoted standby's transactions name timeline 2: {id}"
        );
    }
}

#[test]
fn a_database_made_from_a_template_sends_webhook_ids_of_its_own() {
    // CREATE DATABASE … TEMPLATE copies the subscriptions, their uids and the event id
    // sequence, as a restore does; the copy's database OID differs, so its instance does. (The
    // template has no workers: pg_webhook.database names another database, so nobody is
    // connected to it when it is copied.)
    let pg = Cluster::start(&["pg_webhook.database = 'postgres'"]);
    let rx = Receiver::start();
    exec(&mut pg.connect("postgres"), "CREATE DATABASE tmpl");
    let before = {
        let mut tmpl = pg.connect("tmpl");
        exec(
            &mut tmpl,
            "CREATE EXTENSION pg_webhook; CREATE TABLE orders (id int PRIMARY KEY)",
        );
        subscribe(&mut tmpl, "orders", "orders", &rx.url("/orders"), "");
        uid(&mut tmpl)
    };
    exec(
        &mut pg.connect("postgres"),
        "CREATE DATABASE app TEMPLATE tmpl",
    );
    pg.append_conf("pg_webhook.database = 'app'");
    pg.reload();
    let mut app = pg.connect("app");
    wait_until(WAIT, "the copy's worker to renew the uid", || {
        uid(&mut app) != before
    });
    exec(&mut app, "INSERT INTO orders VALUES (1)");
    assert_eq!(prefixes(&rx, 1), vec![format!("msg_{}", uid(&mut app))]);
    assert_eq!(
        uid(&mut pg.connect("tmpl")),
        before,
        "the template keeps its uid"
    );
}
