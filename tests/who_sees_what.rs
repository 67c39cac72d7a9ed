//! Who sees what of another owner's subscription: code of the owner's (a filter, a backfill's
//! filter, a callback) runs with the owner's rights and may read what other readers of the
//! table may not, so what it chose or said is shown to those who manage the subscription only;
//! and `webhook._in_flight()`, which webhook_admin members may call, shows only the
//! subscriptions its caller may see. Each test is the attack, and passes once it no longer works.

mod support;

use std::time::Duration;

use support::backfill::wait_state;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{count, error_of, exec, subscribe, text, WAIT};

/// `app.orders` (written by bob) and `app.customers` (readable by alice only); alice and carol
/// are webhook_admin members who may read and subscribe `app.orders`, dave one who may read
/// neither. `app.leak(jsonb)`, alice's, raises an error quoting customer 1's e-mail.
fn shop(pg: &Cluster) -> postgres::Client {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
         CREATE ROLE dave LOGIN;
         GRANT webhook_admin TO alice, carol, dave;
         CREATE SCHEMA app;
         CREATE TABLE app.customers (id int PRIMARY KEY, email text);
         INSERT INTO app.customers VALUES (1, 'ann@example.com');
         CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int, total numeric(8,2));
         GRANT USAGE ON SCHEMA app TO alice, bob, carol;
         GRANT SELECT ON app.customers TO alice;
         GRANT SELECT, TRIGGER ON app.orders TO alice, carol;
         GRANT SELECT, INSERT, UPDATE, DELETE ON app.orders TO bob;
         CREATE FUNCTION app.leak(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'customer %', (SELECT c.email FROM app.customers c WHERE c.id = 1);
         END $$;
         ALTER FUNCTION app.leak(jsonb) OWNER TO alice;",
    );
    su
}

/// Attack (hostile webhook_admin member reading the queue): alice's filter compares each new
/// order's customer to one looked up in `app.customers`, which carol may not read. Carol, who
/// reads `app.orders`, saw which orders became events — whether order 7's customer is ann —
/// as she would guess after guess, had she written them.
#[test]
fn a_filters_events_are_hidden_from_readers_of_the_table_who_do_not_own_it() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    // Unreachable receiver: the events stay queued (and readable) while the test looks.
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "anns",
        "app.orders",
        "http://127.0.0.1:9/hooks",
        ", events => ARRAY['insert'], filter => $$NEW.customer_id = (SELECT c.id FROM app.customers c
                                           WHERE c.email = 'ann@example.com')$$",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "INSERT INTO app.orders VALUES (7, 1, 12.50), (8, 2, 3.00)",
    );
    wait_until(WAIT, "alice to see her event", || {
        count(&mut alice, "SELECT count(*) FROM webhook.events") == 1
    });
    let mut carol = pg.connect_as("postgres", "carol");
    let denied = error_of(&mut carol, "SELECT * FROM app.customers");
    assert!(denied.contains("permission denied"), "{denied}");
    assert_eq!(
        count(&mut carol, "SELECT count(*) FROM webhook.events"),
        0,
        "carol saw which orders alice's filter let through"
    );
    for view in ["subscriptions", "subscription_stats"] {
        let sql = format!("SELECT count(*) FROM webhook.{view}");
        assert_eq!(count(&mut carol, &sql), 0, "{view}");
    }
}

/// Attack: alice's callback fails with an error quoting what it read as alice; carol, who
/// sees the event (a plain subscription of a table she reads), read it in `callback_error`.
#[test]
fn a_callbacks_error_is_shown_only_to_those_who_manage_the_subscription() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "orders",
        "app.orders",
        &rx.url("/orders"),
        ", callback => 'app.leak(jsonb)'",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "INSERT INTO app.orders VALUES (7, 1, 12.50)");
    let mut error = String::new();
    wait_until(WAIT, "the callback's error to be recorded", || {
        error =
            text(&mut alice, "SELECT max(callback_error) FROM webhook.events").unwrap_or_default();
        !error.is_empty()
    });
    assert!(error.contains("customer ann@example.com"), "{error}");
    let mut carol = pg.connect_as("postgres", "carol");
    assert_eq!(
        count(
            &mut carol,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'"
        ),
        1
    );
    assert_eq!(
        text(&mut carol, "SELECT max(callback_error) FROM webhook.events"),
        None,
        "carol read what alice's callback read"
    );
}

/// Attack: alice backfills her plain subscription with a filter that reads `app.customers`;
/// it fails on every chunk, and its error quotes a customer's e-mail. Carol saw the backfill
/// (and would see which rows a working one sent), its error included.
#[test]
fn a_backfill_filter_hides_its_subscription_from_readers_who_do_not_own_it() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let rx = Receiver::start();
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "orders", "app.orders", &rx.url("/orders"), "");
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "INSERT INTO app.orders VALUES (7, 1, 12.50)");
    let mut carol = pg.connect_as("postgres", "carol");
    assert_eq!(
        count(&mut carol, "SELECT count(*) FROM webhook.subscriptions"),
        1,
        "carol sees a plain subscription of a table she reads"
    );
    exec(
        &mut alice,
        "SELECT * FROM webhook.backfill('orders', filter => $$(SELECT c.email FROM app.customers c
                                                              WHERE c.id = 1)::int > 0$$)",
    );
    wait_state(&mut alice, "orders", "failed");
    let error = text(&mut alice, "SELECT last_error FROM webhook.backfills").unwrap_or_default();
    assert!(error.contains("ann@example.com"), "{error}");
    assert_eq!(
        text(
            &mut carol,
            "SELECT string_agg(COALESCE(last_error, '-'), ',') FROM webhook.backfills"
        ),
        None,
        "carol saw alice's filtered backfill"
    );
    for view in ["subscriptions", "subscription_stats", "events"] {
        let sql = format!("SELECT count(*) FROM webhook.{view}");
        assert_eq!(count(&mut carol, &sql), 0, "{view}");
    }
}

/// Attack: dave, a webhook_admin member who may see none of alice's subscriptions, called
/// `webhook._in_flight()` (executable by webhook_admin for subscription_stats) and read her
/// subscription's id and how many requests it had in flight.
#[test]
fn in_flight_counts_only_the_subscriptions_the_caller_may_see() {
    let pg = Cluster::start(&[]);
    let mut su = shop(&pg);
    let rx = Receiver::with(|_, _| Reply::Hang(Duration::from_secs(120)));
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "orders",
        "app.orders",
        &rx.url("/orders"),
        ", timeout => '2 min'",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    exec(&mut bob, "INSERT INTO app.orders VALUES (7, 1, 12.50)");
    let in_flight = "SELECT count(*) FROM webhook._in_flight()";
    wait_until(WAIT, "a request in flight", || {
        count(&mut su, in_flight) == 1
    });
    let mut dave = pg.connect_as("postgres", "dave");
    assert_eq!(
        count(&mut dave, "SELECT count(*) FROM webhook.subscriptions"),
        0
    );
    assert_eq!(count(&mut dave, in_flight), 0, "dave saw alice's requests");
    // Still in flight: alice, who may see it, is shown it.
    assert_eq!(count(&mut alice, in_flight), 1);
}

/// Attack (hostile webhook_admin member probing names): carol, who may not see alice's
/// filtered subscription, asked the API to pause it and was told she may not — which
/// confirmed that it exists. She is now told it does not exist, as for a name nobody uses;
/// one she may see, and not manage, is still refused as such.
#[test]
fn the_api_does_not_confirm_the_name_of_a_subscription_its_caller_may_not_see() {
    let pg = Cluster::start(&[]);
    let _su = shop(&pg);
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(
        &mut alice,
        "anns",
        "app.orders",
        "http://127.0.0.1:9/hooks",
        ", events => ARRAY['insert'], filter => $$NEW.customer_id = 1$$",
    );
    subscribe(
        &mut alice,
        "all",
        "app.orders",
        "http://127.0.0.1:9/hooks",
        "",
    );
    let mut carol = pg.connect_as("postgres", "carol");
    let hidden = error_of(&mut carol, "SELECT webhook.pause('anns')");
    assert!(
        hidden.contains("subscription \"anns\" does not exist"),
        "{hidden}"
    );
    let nobodys = error_of(&mut carol, "SELECT webhook.pause('nobodys')");
    assert!(
        nobodys.contains("subscription \"nobodys\" does not exist"),
        "{nobodys}"
    );
    let seen = error_of(&mut carol, "SELECT webhook.pause('all')");
    assert!(
        seen.contains("permission denied to pause \"all\": only its owner or a superuser may"),
        "{seen}"
    );
}
