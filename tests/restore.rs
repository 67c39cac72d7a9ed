//! A dump restored while pg_webhook's workers run: pg_restore writes the subscriptions with the
//! table data and makes their triggers only afterwards, and the worker's trigger check must not
//! take that for triggers dropped by hand. One scenario per test.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec, subscribe, text, LONG_WAIT, WAIT};

#[test]
fn a_trigger_check_between_a_restores_data_and_its_triggers_keeps_the_subscriptions() {
    let source = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut db = source.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE orders (id int PRIMARY KEY, total int)",
    );
    subscribe(&mut db, "orders", "orders", &rx.url("/orders"), "");
    let dump = source.dir.join("app.dump");
    let dump = dump.to_str().expect("a UTF-8 path");
    source.tool("pg_dump", &["-Fc", "-d", "postgres", "-f", dump]);

    let target = Cluster::start(&[]);
    exec(&mut target.connect("postgres"), "CREATE DATABASE app");
    // The tables and their data, subscriptions included; the triggers not yet.
    target.tool(
        "pg_restore",
        &[
            "--exit-on-error",
            "--section=pre-data",
            "--section=data",
            "-d",
            "app",
            dump,
        ],
    );
    let mut app = target.connect("app");
    // Workers serve app: a subscription of its own is delivered.
    exec(&mut app, "CREATE TABLE marker (id int PRIMARY KEY)");
    subscribe(&mut app, "marker", "marker", &rx.url("/marker"), "");
    exec(&mut app, "INSERT INTO marker VALUES (1)");
    wait_until(WAIT, "the marker's event", || {
        rx.requests().iter().any(|r| r.path == "/marker")
    });
    // A trigger check runs while the restored subscription lacks its triggers: the stray
    // trigger it drops in the same pass is the sign.
    exec(
        &mut app,
        "CREATE TRIGGER stray AFTER INSERT ON marker REFERENCING NEW TABLE AS pg_webhook_new
             FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('999')",
    );
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
    assert_eq!(
        text(
            &mut app,
            "SELECT status || ' ' || COALESCE(status_reason, '') FROM webhook.subscriptions
              WHERE name = 'orders'"
        )
        .as_deref(),
        Some("active "),
        "the restored subscription was ended before its triggers came"
    );
    // The rest of the dump: the triggers. The subscription captures and delivers.
    target.tool(
        "pg_restore",
        &["--exit-on-error", "--section=post-data", "-d", "app", dump],
    );
    exec(&mut app, "INSERT INTO orders VALUES (1, 5)");
    wait_until(WAIT, "the restored subscription's event", || {
        rx.requests().iter().any(|r| r.path == "/orders")
    });
}
