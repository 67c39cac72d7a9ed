//! A dump restored while pg_webhook's workers run: pg_restore writes the subscriptions with the
//! table data and makes their triggers only afterwards, and the worker's trigger check must not
//! take that for triggers dropped by hand. One scenario per test.

mod support;

use support::cluster::{install_released_script, wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, ended_subscription, exec, stray_trigger, subscribe, text, LONG_WAIT, WAIT};

/// Dumps `source`'s database postgres (custom format); the dump's path.
fn dump_of(source: &Cluster) -> String {
    let dump = source.dir.join("app.dump");
    let dump = dump.to_str().expect("a UTF-8 path").to_string();
    source.tool("pg_dump", &["-Fc", "-d", "postgres", "-f", &dump]);
    dump
}

/// Restores `dump` into `target`'s database app with pg_restore's options `how`.
fn restore(target: &Cluster, dump: &str, how: &[&str]) {
    let mut args = vec!["--exit-on-error"];
    args.extend_from_slice(how);
    args.extend_from_slice(&["-d", "app", dump]);
    target.tool("pg_restore", &args);
}

/// The data of `dump` into app, without firing its tables' triggers (as a data-only restore
/// should be: capturing the restored rows would send the whole table again).
fn restore_data(target: &Cluster, dump: &str) {
    restore(target, dump, &["--data-only", "--disable-triggers"]);
}

/// A cluster whose table orders has a subscription (its id), with its receiver and dump.
fn dumped_orders() -> (Cluster, Receiver, i32, String) {
    let source = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = source.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE orders (id int PRIMARY KEY, total int)",
    );
    let (id, _) = subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let dump = dump_of(&source);
    (source, rx, id, dump)
}

/// A new cluster with an empty database app to restore into.
fn restore_target() -> Cluster {
    let target = Cluster::start(&[]);
    exec(&mut target.connect("postgres"), "CREATE DATABASE app");
    target
}

/// A cluster whose database postgres has pg_webhook's 0.2.0 SQL objects, a table ledger and
/// the tables `more` makes, with a receiver.
fn with_0_2_0(more: &str) -> (Cluster, Receiver, postgres::Client) {
    install_released_script("0.1.0");
    install_released_script("0.2.0");
    let source = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = source.connect("postgres");
    exec(
        &mut db,
        &format!(
            "CREATE EXTENSION pg_webhook VERSION '0.2.0';
             CREATE TABLE ledger (id int PRIMARY KEY, amount int);
             {more}"
        ),
    );
    (source, rx, db)
}

#[test]
fn a_trigger_check_between_a_restores_data_and_its_triggers_keeps_the_subscriptions() {
    let (_source, rx, _, dump) = dumped_orders();
    let dump = dump.as_str();

    let target = restore_target();
    // The tables and their data, subscriptions included; the triggers not yet.
    restore(&target, dump, &["--section=pre-data", "--section=data"]);
    let mut app = target.connect("app");
    // Workers serve app: a subscription of its own is delivered.
    exec(&mut app, "CREATE TABLE marker (id int PRIMARY KEY)");
    subscribe(&mut app, "marker", "marker", &rx.url("/marker"), "");
    exec(&mut app, "INSERT INTO marker VALUES (1)");
    wait_until(WAIT, "the marker's event", || {
        rx.requests().iter().any(|r| r.path == "/marker")
    });
    // A trigger check runs while the restored subscription lacks its triggers: a stray trigger
    // naming an ended subscription, which it drops in the same pass, is the sign.
    let ended = ended_subscription(&mut app, &rx.url("/ended"), "marker");
    stray_trigger(&mut app, "marker", "stray", ended);
    wait_until(
        LONG_WAIT,
        "the trigger check to drop the stray trigger",
        || {
            count(
                &mut app,
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'stray'",
            ) == 0
        },
    );
    // Still active, and saying why it captures nothing yet, in both views.
    let status = |app: &mut postgres::Client, view: &str| {
        text(
            app,
            &format!(
                "SELECT status || ': ' || COALESCE(status_reason, '') FROM webhook.{view}
                  WHERE name = 'orders'"
            ),
        )
        .unwrap_or_default()
    };
    for view in ["subscriptions", "subscription_stats"] {
        let shown = status(&mut app, view);
        assert!(
            shown.starts_with("active: restored: its capture triggers are not confirmed yet"),
            "{view}: {shown}"
        );
    }
    // The rest of the dump: the triggers. The subscription captures and delivers.
    restore(&target, dump, &["--section=post-data"]);
    exec(&mut app, "INSERT INTO orders VALUES (1, 5)");
    wait_until(WAIT, "the restored subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/orders")
    });
    wait_until(
        LONG_WAIT,
        "the trigger check to confirm its triggers",
        || status(&mut app, "subscription_stats") == "active: ",
    );
    assert_eq!(status(&mut app, "subscriptions"), "active: ");
}

#[test]
fn a_restore_of_the_schema_then_the_data_keeps_the_subscriptions() {
    let source = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = source.client_with_extension();
    // Ids apart from the one the target's own subscription gets.
    exec(
        &mut db,
        "SELECT setval('webhook._subscription_id_seq', 100);
         CREATE TABLE orders (id int PRIMARY KEY, total int);",
    );
    let (id, _) = subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let dump = dump_of(&source);
    let dump = dump.as_str();

    let target = restore_target();
    // The schema first, capture triggers included; the subscriptions' rows come with the data.
    restore(&target, dump, &["--schema-only"]);
    // The launcher tries every database when it starts: app gets its workers.
    target.stop("fast");
    target.pg_ctl_start();
    let mut app = target.connect("app");
    wait_until(
        LONG_WAIT,
        "the trigger check to see the restored trigger",
        || {
            target.log().contains(&format!(
            "pg_webhook_{id}_insert on public.orders names subscription {id}, which does not exist, and is left as it is"
        ))
        },
    );
    restore_data(&target, dump);
    exec(&mut app, "INSERT INTO orders VALUES (1, 5)");
    wait_until(WAIT, "the restored subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/orders")
    });
}

#[test]
fn a_subscription_is_refused_between_a_schema_restore_and_its_data() {
    let (_source, rx, id, dump) = dumped_orders();
    let dump = dump.as_str();

    let target = restore_target();
    restore(&target, dump, &["--schema-only"]);
    let mut app = target.connect("app");
    exec(&mut app, "CREATE TABLE marker (id int PRIMARY KEY)");
    // The id sequence starts over with the schema: a new subscription would take the id the
    // restored trigger names, and the data restore would then fail on it.
    let refused = app
        .query_one(
            "SELECT id FROM webhook.subscribe('marker', 'marker', $1)",
            &[&rx.url("/marker")],
        )
        .expect_err("a subscription before the restore's data");
    let message = refused
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "on public.orders names subscription {id}, which does not exist"
        )),
        "{refused}"
    );
    restore_data(&target, dump);
    let (marker, _) = subscribe(&mut app, "marker", "marker", &rx.url("/marker"), "");
    assert!(marker > id, "subscription {marker} after restored {id}");
    exec(
        &mut app,
        "INSERT INTO orders VALUES (1, 5); INSERT INTO marker VALUES (1)",
    );
    wait_until(WAIT, "both subscriptions' events", || {
        let requests = rx.requests();
        ["/orders", "/marker"]
            .iter()
            .all(|p| requests.iter().any(|r| r.path == *p))
    });
}

#[test]
fn a_dump_of_0_2_0_restored_into_this_version_gets_its_triggers_in_this_form() {
    let (source, rx, mut db) = with_0_2_0("");
    // 0.2.0 SQL objects have no order-lock function: the dump has no order-lock trigger.
    let (id, _) = subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        ", events => ARRAY['insert'], ordered => true, filter => $$NEW.amount > 0$$",
    );
    let old_uid = text(&mut db, "SELECT uid FROM webhook.subscriptions").unwrap_or_default();
    let dump = dump_of(&source);
    let dump = dump.as_str();

    // Restored where CREATE EXTENSION gives this version.
    let target = restore_target();
    restore(&target, dump, &[]);
    let mut app = target.connect("app");
    // Workers serve app once a subscription of its own is made there.
    exec(&mut app, "CREATE TABLE marker (id int PRIMARY KEY)");
    subscribe(&mut app, "marker", "marker", &rx.url("/marker"), "");
    wait_until(LONG_WAIT, "the order-lock trigger of this version", || {
        count(
            &mut app,
            &format!("SELECT count(*) FROM pg_trigger WHERE tgname = 'pg_webhook_{id}_order'"),
        ) == 1
    });
    exec(&mut app, "INSERT INTO ledger VALUES (1, 5), (2, -1)");
    wait_until(WAIT, "the restored subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/ledger")
    });
    let sent: Vec<i64> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/ledger")
        .filter_map(|r| r.json()["record"]["id"].as_i64())
        .collect();
    assert_eq!(sent, vec![1], "the filter still applies");
    // The dump of 0.2.0 says nothing of where its rows were made: a copy, with uids of its own.
    let ledger = rx.requests().into_iter().find(|r| r.path == "/ledger");
    let webhook_id = ledger.map(|r| r.id()).unwrap_or_default();
    assert!(
        webhook_id.starts_with("msg_") && !webhook_id.starts_with(&format!("msg_{old_uid}_")),
        "{webhook_id}"
    );
}

#[test]
fn a_restored_subscription_gets_no_capture_trigger_on_a_table_the_restore_left_without_one() {
    let (source, rx, mut db) = with_0_2_0(
        "CREATE TABLE m (id int, at int) PARTITION BY RANGE (at);
         CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (10);",
    );
    // Restored, ledger's subscription lacks only its order lock, so it is made complete once
    // its triggers have settled: the sign that m's could have been too.
    let (ledger, _) = subscribe(
        &mut db,
        "ledger",
        "ledger",
        &rx.url("/ledger"),
        ", ordered => true",
    );
    let (m, _) = subscribe(&mut db, "m", "m", &rx.url("/m"), "");
    let dump = dump_of(&source);
    // Everything but m_1's capture triggers, as when pg_restore -j has not got to them (nor,
    // maybe, to m_1's rows).
    let list = source.dir.join("restore.list");
    let all = source.tool("pg_restore", &["-l", &dump]);
    let kept: Vec<&str> = all
        .lines()
        .filter(|l| !(l.contains(" TRIGGER public m_1 ")))
        .collect();
    assert!(
        kept.len() < all.lines().count(),
        "m_1 has triggers in the dump:\n{all}"
    );
    std::fs::write(&list, kept.join("\n")).expect("writing the restore list");
    let target = restore_target();
    restore(
        &target,
        &dump,
        &["-L", list.to_str().expect("a UTF-8 path")],
    );
    let mut app = target.connect("app");
    exec(&mut app, "CREATE TABLE marker (id int PRIMARY KEY)");
    subscribe(&mut app, "marker", "marker", &rx.url("/marker"), "");
    wait_until(
        LONG_WAIT,
        "ledger's order lock, once its triggers settled",
        || {
            count(
                &mut app,
                &format!(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = 'pg_webhook_{ledger}_order'"
                ),
            ) == 1
        },
    );
    assert_eq!(
        count(
            &mut app,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'm_1'::regclass"
        ),
        0,
        "the check made a capture trigger on a table the restore had not given one"
    );
    assert!(
        target.log().contains(&format!(
            "subscription {m} lacks its trigger pg_webhook_{m}_insert on public.m_1 and is left as it is"
        )),
        "the server log says what is missing"
    );
}
