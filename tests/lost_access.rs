//! An owner who may no longer read a subscribed table — SELECT revoked, USAGE on its schema
//! revoked, row-level security come to bind them — keeps nothing of its rows: the events are
//! held, the rows they carry are not shown to them, and their filters cannot keep copies. One
//! scenario per test; each fails on a pg_webhook that lets them read on.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// bob, a webhook_admin member who may read `ledger` and attach triggers to it.
fn bob_reads_ledger(su: &mut postgres::Client) {
    exec(
        su,
        "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
         GRANT CREATE ON SCHEMA public TO bob;
         CREATE TABLE ledger (id int PRIMARY KEY, tenant text, secret text);
         GRANT SELECT, TRIGGER ON ledger TO bob;",
    );
}

/// The `secret` of each of `who`'s visible events, in id order (NULL where the row is not
/// shown).
fn secrets_seen(who: &mut postgres::Client) -> Vec<Option<String>> {
    who.query(
        "SELECT record->>'secret' FROM webhook.events ORDER BY id",
        &[],
    )
    .expect("reading webhook.events")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn an_owner_who_may_no_longer_read_the_table_sees_its_events_without_their_rows() {
    // No worker: the events stay queued, as a disabled subscription's are.
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", "http://127.0.0.1:9/bob", "");
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'b', 'readable')");
    assert_eq!(secrets_seen(&mut bob), vec![Some("readable".to_string())]);
    // Row-level security binds bob: he may read tenant 'b' only, so no row is shown to him.
    exec(
        &mut su,
        "ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_b ON ledger FOR SELECT TO bob USING (tenant = 'b');
         INSERT INTO ledger VALUES (2, 'a', 'hidden-by-policy');",
    );
    assert_eq!(
        count(&mut bob, "SELECT count(*) FROM ledger"),
        1,
        "the policy hides tenant a's row from bob"
    );
    assert_eq!(secrets_seen(&mut bob), vec![None, None]);
    // SELECT revoked outright: the same.
    exec(
        &mut su,
        "ALTER TABLE ledger DISABLE ROW LEVEL SECURITY;
         REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (3, 'a', 'after-revoke');",
    );
    let e = error_of(&mut bob, "SELECT * FROM ledger");
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(secrets_seen(&mut bob), vec![None, None, None]);
    assert_eq!(
        count(
            &mut bob,
            "SELECT count(*) FROM webhook.events WHERE old_record IS NOT NULL"
        ),
        0
    );
    // A superuser sees every row; bob again once he may read the table.
    let all = vec![
        Some("readable".to_string()),
        Some("hidden-by-policy".to_string()),
        Some("after-revoke".to_string()),
    ];
    assert_eq!(secrets_seen(&mut su), all);
    exec(&mut su, "GRANT SELECT ON ledger TO bob");
    assert_eq!(secrets_seen(&mut bob), all);
}

#[test]
fn revoking_usage_on_the_tables_schema_holds_the_subscriptions_events() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
         CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO bob;
         CREATE TABLE app.ledger (id int PRIMARY KEY, secret text);
         GRANT SELECT, TRIGGER ON app.ledger TO bob;
         CREATE TABLE marker (id int PRIMARY KEY);",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "app.ledger", &rx.url("/bob"), "");
    subscribe(&mut su, "markers", "marker", &rx.url("/marker"), "");
    exec(&mut su, "INSERT INTO app.ledger VALUES (1, 'before')");
    rx.wait_for(1, WAIT);
    // The usual way to cut a role off a whole schema.
    exec(
        &mut su,
        "REVOKE USAGE ON SCHEMA app FROM bob;
         INSERT INTO app.ledger VALUES (2, 'after-usage-revoked');
         INSERT INTO marker VALUES (1);",
    );
    let e = error_of(&mut bob, "SELECT * FROM app.ledger");
    assert!(e.contains("permission denied for schema app"), "{e}");
    wait_until(
        WAIT,
        "the subscription to be disabled with the reason",
        || {
            text(
            &mut su,
            "SELECT status || ': ' || COALESCE(status_reason, '')
               FROM webhook.subscriptions WHERE name = 'bobs'",
        )
        .is_some_and(|s| {
            s.starts_with(
                "disabled: its owner bob may no longer read app.ledger (USAGE on schema app was revoked)",
            )
        })
        },
    );
    wait_until(WAIT, "the marker", || {
        rx.requests().iter().any(|r| r.path == "/marker")
    });
    wait_until(WAIT, "bob's new event to be parked", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 1
    });
    let sent: Vec<String> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/bob")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // USAGE back, resumed: the held event goes out.
    exec(
        &mut su,
        "GRANT USAGE ON SCHEMA app TO bob; SELECT webhook.resume('bobs')",
    );
    wait_until(WAIT, "the held event", || {
        rx.requests()
            .iter()
            .any(|r| r.path == "/bob" && String::from_utf8_lossy(&r.body).contains("after-usage"))
    });
}

#[test]
fn what_a_filter_writes_is_undone_so_it_cannot_keep_the_rows_it_sees() {
    let pg = Cluster::start(&["pg_webhook.database = 'elsewhere'"]);
    let mut su = pg.client_with_extension();
    bob_reads_ledger(&mut su);
    let mut bob = pg.connect_as("postgres", "bob");
    exec(
        &mut bob,
        "CREATE TABLE public.loot (secret text);
         CREATE FUNCTION public.keep(s text) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.loot VALUES (s); RETURN s <> 'skip'; END $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "ledger",
        "http://127.0.0.1:9/bob",
        ", events => ARRAY['insert'], filter => $$public.keep(NEW.secret)$$",
    );
    // The filter still chooses the rows; what it wrote is gone, with or without access.
    exec(
        &mut su,
        "INSERT INTO ledger VALUES (1, 'b', 'chosen'), (2, 'b', 'skip');
         REVOKE SELECT ON ledger FROM bob;
         INSERT INTO ledger VALUES (3, 'a', 'after-revoke');",
    );
    assert_eq!(
        secrets_seen(&mut su),
        vec![Some("chosen".to_string()), Some("after-revoke".to_string())]
    );
    assert_eq!(
        count(&mut bob, "SELECT count(*) FROM public.loot"),
        0,
        "bob's filter kept copies of the rows it saw"
    );
}
