//! Ways past a table's privileges: subscribing a table one may only read, or past its
//! row-level security policies; keeping its rows after losing access; reading a subscription's
//! URL, or its endpoint's answers, as another reader of the table; replaying another owner's
//! event. One scenario per test; each fails on a pg_webhook that lets them in.

mod support;

use support::cluster::{wait_until, Cluster};
use support::mallory::victim_and_mallory;
use support::receiver::{Receiver, Reply};
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn a_table_under_row_level_security_cannot_be_subscribed_past_its_policies() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE owner_r LOGIN; CREATE ROLE mallory LOGIN; CREATE ROLE auditor LOGIN BYPASSRLS;
         GRANT webhook_admin TO owner_r, mallory, auditor;
         GRANT CREATE ON SCHEMA public TO owner_r;
         SET ROLE owner_r;
         CREATE TABLE tenants_data (id int PRIMARY KEY, tenant text);
         ALTER TABLE tenants_data ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON tenants_data FOR SELECT TO mallory USING (tenant = 'm');
         GRANT SELECT, TRIGGER ON tenants_data TO mallory, auditor;
         RESET ROLE;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    let e = error_of(
        &mut mallory,
        &format!(
            "SELECT webhook.subscribe('m', 'tenants_data', '{}')",
            rx.url("/m")
        ),
    );
    assert!(
        e.contains("row-level security policies limit which of its rows you may read"),
        "{e}"
    );
    assert!(e.contains("BYPASSRLS"), "{e}");
    // The owner is exempt (without FORCE), and so is a BYPASSRLS role.
    let mut owner = pg.connect_as("postgres", "owner_r");
    subscribe(&mut owner, "owner_sub", "tenants_data", &rx.url("/o"), "");
    let mut auditor = pg.connect_as("postgres", "auditor");
    subscribe(&mut auditor, "audit", "tenants_data", &rx.url("/a"), "");
    // With FORCE ROW LEVEL SECURITY the owner is subject to its policies too.
    exec(
        &mut owner,
        "ALTER TABLE tenants_data FORCE ROW LEVEL SECURITY",
    );
    let e = error_of(
        &mut owner,
        &format!(
            "SELECT webhook.subscribe('o2', 'tenants_data', '{}')",
            rx.url("/o2")
        ),
    );
    assert!(e.contains("row-level security"), "{e}");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM webhook._subscriptions WHERE name IN ('m', 'o2')"
        ),
        0
    );
}

#[test]
fn losing_read_access_holds_the_subscriptions_events_until_it_is_back() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE bob LOGIN; GRANT webhook_admin TO bob;
         CREATE TABLE ledger (id int PRIMARY KEY, tenant text);
         GRANT SELECT, TRIGGER ON ledger TO bob;
         CREATE TABLE marker (id int PRIMARY KEY);",
    );
    let mut bob = pg.connect_as("postgres", "bob");
    subscribe(&mut bob, "bobs", "ledger", &rx.url("/bob"), "");
    subscribe(&mut su, "markers", "marker", &rx.url("/marker"), "");
    exec(&mut su, "INSERT INTO ledger VALUES (1, 'a')");
    rx.wait_for(1, WAIT);
    // Row-level security now applies to bob: nothing more of the table goes to him.
    exec(
        &mut su,
        "ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
         CREATE POLICY only_b ON ledger FOR SELECT TO bob USING (tenant = 'b');
         INSERT INTO ledger VALUES (2, 'a'), (3, 'b');
         INSERT INTO marker VALUES (1);",
    );
    wait_until(
        WAIT,
        "the subscription to be disabled with the reason",
        || {
            text(
            &mut su,
            "SELECT status || ': ' || COALESCE(status_reason, '') FROM webhook.subscriptions WHERE name = 'bobs'",
        )
        .is_some_and(|s| s.starts_with("disabled: row-level security on public.ledger now applies to its owner bob"))
        },
    );
    wait_until(WAIT, "the marker", || {
        rx.requests().iter().any(|r| r.path == "/marker")
    });
    wait_until(WAIT, "bob's new events to be parked", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE status = 'parked'",
        ) == 2
    });
    assert_eq!(rx.requests().iter().filter(|r| r.path == "/bob").count(), 1);
    // SELECT revoked: same.
    exec(
        &mut su,
        "ALTER TABLE ledger DISABLE ROW LEVEL SECURITY; SELECT webhook.resume('bobs');
         REVOKE SELECT ON ledger FROM bob; INSERT INTO marker VALUES (2);",
    );
    wait_until(WAIT, "the second marker", || {
        rx.requests().iter().filter(|r| r.path == "/marker").count() == 2
    });
    wait_until(WAIT, "the subscription to be disabled again", || {
        text(
            &mut su,
            "SELECT status_reason FROM webhook.subscriptions WHERE name = 'bobs'",
        )
        .is_some_and(|s| s.contains("SELECT was revoked"))
    });
    let bob: Vec<String> = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/bob")
        .map(|r| format!("{} {}", r.id(), String::from_utf8_lossy(&r.body)))
        .collect();
    assert_eq!(bob.len(), 1, "{bob:?}\n{}", pg.log());
    // Access back, resumed: the held events go out.
    exec(
        &mut su,
        "GRANT SELECT ON ledger TO bob; SELECT webhook.resume('bobs')",
    );
    wait_until(WAIT, "the held events", || {
        rx.requests().iter().filter(|r| r.path == "/bob").count() == 3
    });
}

#[test]
fn readers_of_a_table_see_a_subscriptions_url_only_up_to_its_host() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO reader;",
    );
    subscribe(
        &mut su,
        "t",
        "t",
        "https://hooks.example.com:8443/in/tok_live_123?key=s3cret",
        "",
    );
    let mut reader = pg.connect_as("postgres", "reader");
    let seen = text(
        &mut reader,
        "SELECT url FROM webhook.subscriptions WHERE name = 't'",
    );
    assert_eq!(seen.as_deref(), Some("https://hooks.example.com:8443/…"));
    let full = text(
        &mut su,
        "SELECT url FROM webhook.subscriptions WHERE name = 't'",
    );
    assert_eq!(
        full.as_deref(),
        Some("https://hooks.example.com:8443/in/tok_live_123?key=s3cret")
    );
}

#[test]
fn read_access_alone_is_not_enough_to_subscribe() {
    // issue 15: a subscription is a trigger, and needs the TRIGGER privilege.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; CREATE ROLE trusted LOGIN;
         GRANT webhook_admin TO mallory, trusted;
         CREATE TABLE payments (id int PRIMARY KEY);
         GRANT SELECT ON payments TO mallory, trusted; GRANT TRIGGER ON payments TO trusted;",
    );
    let before = text(
        &mut su,
        "SELECT count(*)::text || '/' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'payments'::regclass) FROM webhook._subscriptions",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    for extra in [
        "",
        ", events => ARRAY['insert'], filter => $$ (NEW.id / (NEW.id - NEW.id)) = 1 $$",
        ", filter => $$ pg_catalog.pg_sleep(0.5) IS NOT NULL $$",
        ", ordered => true",
    ] {
        let e = error_of(
            &mut mallory,
            &format!(
                "SELECT webhook.subscribe('m', 'payments', '{}'{extra})",
                rx.url("/m")
            ),
        );
        assert!(
            e.contains("you need the TRIGGER privilege on it"),
            "{extra}: {e}"
        );
        assert!(
            e.contains("GRANT TRIGGER ON public.payments TO <your role>;"),
            "{e}"
        );
    }
    let after = text(
        &mut su,
        "SELECT count(*)::text || '/' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'payments'::regclass) FROM webhook._subscriptions",
    );
    assert_eq!(before, after, "a refused subscribe left something behind");
    // The owner's writes are untouched.
    exec(&mut su, "INSERT INTO payments VALUES (1)");
    // With TRIGGER, a member may.
    let mut trusted = pg.connect_as("postgres", "trusted");
    subscribe(
        &mut trusted,
        "ok",
        "payments",
        &rx.url("/ok"),
        ", ordered => true",
    );
    exec(&mut su, "INSERT INTO payments VALUES (2)");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 2);
}

#[test]
fn replaying_another_owners_event_tells_nothing_of_it() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut mallory, _) = victim_and_mallory(&pg, &rx);
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    rx.wait_for(1, WAIT);
    let id = count(
        &mut su,
        "SELECT id FROM webhook.events WHERE table_name = 'orders'",
    );
    wait_until(WAIT, "alice's event to be archived as delivered", || {
        text(
            &mut su,
            &format!("SELECT status FROM webhook.events WHERE id = {id}"),
        )
        .as_deref()
            == Some("delivered")
    });
    let e = error_of(&mut mallory, &format!("SELECT webhook.replay({id})"));
    assert!(
        e.contains(&format!(
            "event {id} does not exist among your subscriptions' events"
        )),
        "{e}"
    );
    assert!(!e.contains("orders"), "{e}");
}

#[test]
fn readers_of_a_table_see_no_answer_or_error_of_a_subscription_they_do_not_manage() {
    // The endpoint's answer to a request made with the owner's secret, headers or token was
    // shown to every reader of the table, though the view hides the path it quotes.
    let pg = Cluster::start(&[]);
    let rx = Receiver::with(|r, _| Reply::Full {
        status: 404,
        headers: Vec::new(),
        body: format!("no route {}", r.path),
    });
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO reader;",
    );
    // Retried in an hour: the attempt stays in the last hour's failures (subscription_stats).
    subscribe(
        &mut su,
        "t",
        "t",
        &rx.url("/in/tok_live_123"),
        ", retry_schedule => ARRAY['1 hour'::interval]",
    );
    exec(&mut su, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the first attempt recorded", || {
        count(&mut su, "SELECT count(*) FROM webhook.attempts") == 1
    });
    let seen = "SELECT a.status_code::text || ' ' || coalesce(a.response_excerpt, '-') || ' '
                       || coalesce(e.last_error, '-') || ' ' || coalesce(s.last_error, '-')
                  FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id
                  JOIN webhook.subscription_stats s ON s.id = a.subscription_id";
    let mut reader = pg.connect_as("postgres", "reader");
    assert_eq!(text(&mut reader, seen).as_deref(), Some("404 - - -"));
    assert_eq!(
        text(&mut su, seen).as_deref(),
        Some("404 no route /in/tok_live_123 HTTP 404: no route /in/tok_live_123 HTTP 404")
    );
}

#[test]
fn readers_of_a_table_see_no_error_in_why_a_subscription_was_disabled() {
    // pg_webhook 0.2.0 quoted the latest error, an answer's body among them, in the reason it
    // disabled a failing subscription for; such a row comes back with a restored dump.
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO reader;",
    );
    subscribe(&mut su, "t", "t", "http://127.0.0.1:9/in/tok_live_123", "");
    exec(
        &mut su,
        "UPDATE webhook._subscriptions SET status = 'disabled', status_reason =
            'endpoint failing since 2026-01-01; last error: HTTP 404: no route /in/tok_live_123; webhook.resume(''t'') re-enables it'",
    );
    let reason = "SELECT status_reason FROM webhook.subscriptions";
    let mut reader = pg.connect_as("postgres", "reader");
    assert_eq!(
        text(&mut reader, reason).as_deref(),
        Some("endpoint failing since 2026-01-01")
    );
    assert!(
        text(&mut su, reason).is_some_and(|r| r.contains("tok_live_123")),
        "the owner sees it whole"
    );
}
