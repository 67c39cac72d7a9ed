//! Ways in through pg_webhook's own objects: its capture trigger function and the triggers
//! that call it, the `webhook_admin` role, the `webhook` schema, default privileges and
//! publications a hostile role set up before `CREATE EXTENSION`. One scenario per test; each
//! fails on a pg_webhook that lets them in.

mod support;

use support::cluster::Cluster;
use support::mallory::victim_and_mallory;
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

#[test]
fn nobody_but_pg_webhook_can_attach_the_capture_trigger() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut mallory, victim) = victim_and_mallory(&pg, &rx);
    let create = format!(
        "CREATE TRIGGER t AFTER INSERT ON mine REFERENCING NEW TABLE AS pg_webhook_new
           FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{victim}', '10', 'public.my_fn()', '', '', 'false')"
    );
    let e = error_of(&mut mallory, &create);
    assert!(
        e.contains("permission denied for function webhook._capture"),
        "{e}"
    );
    for f in ["webhook._order_lock()", "webhook._capture()"] {
        let granted = count(
            &mut su,
            &format!("SELECT count(*) FROM aclexplode((SELECT proacl FROM pg_proc WHERE oid = '{f}'::regprocedure)) a WHERE a.grantee <> (SELECT extowner FROM pg_extension WHERE extname = 'pg_webhook')"),
        );
        assert_eq!(granted, 0, "{f} is executable by someone besides its owner");
    }
    assert_eq!(
        text(
            &mut su,
            "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'mallory'"
        )
        .as_deref(),
        Some("false")
    );
}

#[test]
fn a_capture_trigger_cannot_borrow_another_tables_subscription_or_pick_a_role() {
    // Even if a DBA hands out EXECUTE on the trigger function by mistake, a trigger naming
    // alice's subscription on another table neither sends there nor runs anything as role 10.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut mallory, victim) = victim_and_mallory(&pg, &rx);
    exec(
        &mut su,
        "GRANT EXECUTE ON FUNCTION webhook._capture() TO mallory",
    );
    exec(
        &mut mallory,
        &format!(
            "CREATE TRIGGER t AFTER INSERT ON mine REFERENCING NEW TABLE AS pg_webhook_new
               FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{victim}', '10', 'public.my_fn()', '', '', 'false');
             CREATE TRIGGER u AFTER INSERT ON mine REFERENCING NEW TABLE AS pg_webhook_new
               FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('{victim}')"
        ),
    );
    let e = error_of(&mut mallory, "INSERT INTO mine VALUES (1)");
    assert!(
        e.contains(&format!(
            "names subscription {victim}, which watches another table"
        )),
        "{e}"
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'mallory'"
        )
        .as_deref(),
        Some("false"),
        "the filter argument ran as the bootstrap superuser"
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM webhook._event_queue"),
        0
    );
    // alice's own subscription still works, and nothing of mallory's table reached her URL.
    exec(&mut su, "INSERT INTO orders VALUES (7)");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["record"]["id"], 7);
}

#[test]
fn a_trigger_named_like_ours_on_another_table_changes_nothing() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE eve LOGIN; GRANT CREATE ON SCHEMA public TO eve;
         CREATE TABLE orders (id int PRIMARY KEY);",
    );
    let (id, _) = subscribe(&mut su, "orders", "orders", &rx.url("/o"), "");
    let mut eve = pg.connect_as("postgres", "eve");
    exec(
        &mut eve,
        &format!(
            "CREATE TABLE mine (id int);
             CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER pg_webhook_{id}_insert AFTER INSERT ON mine FOR EACH STATEMENT EXECUTE FUNCTION nothing();
             DROP TRIGGER pg_webhook_{id}_insert ON mine;
             DROP TABLE mine;"
        ),
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT status FROM webhook.subscriptions WHERE name = 'orders'"
        )
        .as_deref(),
        Some("active")
    );
    exec(&mut su, "INSERT INTO orders VALUES (1)");
    rx.wait_for(1, WAIT);
    // The table's owner dropping one of the real triggers ends the subscription, says why, and
    // takes its other triggers with it.
    exec(
        &mut su,
        &format!("DROP TRIGGER pg_webhook_{id}_update ON orders"),
    );
    let (status, reason) = su
        .query_one(
            "SELECT status, status_reason FROM webhook.subscriptions WHERE name = 'orders'",
            &[],
        )
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .unwrap();
    assert_eq!(status, "unsubscribed");
    assert!(
        reason.contains("trigger pg_webhook_") && reason.contains("was dropped"),
        "{reason}"
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal"
        ),
        0
    );
}

#[test]
fn a_webhook_admin_role_made_beforehand_is_not_adopted_silently() {
    let pg = Cluster::start(&[]);
    let mut su = pg.connect("postgres");
    exec(
        &mut su,
        "CREATE ROLE creator LOGIN CREATEROLE; CREATE ROLE friend LOGIN",
    );
    let mut creator = pg.connect_as("postgres", "creator");
    exec(
        &mut creator,
        "CREATE ROLE webhook_admin LOGIN PASSWORD 'known'",
    );
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains("role webhook_admin already exists and is not the plain NOLOGIN role"),
        "{e}"
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_webhook'"
        ),
        0
    );
    // Made plain, it is taken over, and its members are named.
    exec(
        &mut creator,
        "ALTER ROLE webhook_admin NOLOGIN PASSWORD NULL; GRANT webhook_admin TO friend;",
    );
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = notices.clone();
    let mut config = postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.port)
        .user("postgres")
        .dbname("postgres")
        .notice_callback(move |n| seen.lock().unwrap().push(n.message().to_string()));
    let mut watched = config.connect(postgres::NoTls).unwrap();
    exec(&mut watched, "CREATE EXTENSION pg_webhook");
    let notices = notices.lock().unwrap().clone();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("role webhook_admin already exists") && n.contains("friend")),
        "{notices:?}"
    );
}

/// A superuser's session, and mallory's, who may create schemas in the database (pg_webhook
/// not installed yet).
fn mallory_may_create_schemas(pg: &Cluster) -> (postgres::Client, postgres::Client) {
    let mut su = pg.connect("postgres");
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; GRANT CREATE ON DATABASE postgres TO mallory;",
    );
    (su, pg.connect_as("postgres", "mallory"))
}

#[test]
fn a_schema_webhook_made_beforehand_by_another_role_is_refused_by_create_extension() {
    // mallory may create schemas in the database: she makes webhook first, with a subscribe()
    // that a call with plain literals would choose over pg_webhook's, run as its caller.
    let pg = Cluster::start(&[]);
    let (mut su, mut mallory) = mallory_may_create_schemas(&pg);
    exec(
        &mut mallory,
        "CREATE SCHEMA webhook;
         CREATE FUNCTION webhook.subscribe(text, text, text) RETURNS void LANGUAGE plpgsql AS
           $$ BEGIN ALTER ROLE mallory SUPERUSER; END $$;",
    );
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains("schema webhook is owned by role \"mallory\", who is not a superuser"),
        "{e}"
    );
    // A superuser takes the schema over, but what mallory put there is still hers.
    exec(&mut su, "ALTER SCHEMA webhook OWNER TO postgres");
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains(
            "schema webhook is not empty (it holds function webhook.subscribe(text, text, text))"
        ),
        "{e}"
    );
    exec(
        &mut su,
        "DROP FUNCTION webhook.subscribe(text, text, text); CREATE EXTENSION pg_webhook;",
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'mallory' AND rolsuper"
        ),
        0
    );
}

#[test]
fn a_schema_webhook_that_grants_create_is_refused_by_create_extension() {
    // mallory makes the schema open to all; a superuser takes it over, which keeps her grant.
    let pg = Cluster::start(&[]);
    let (mut su, mut mallory) = mallory_may_create_schemas(&pg);
    exec(
        &mut mallory,
        "CREATE SCHEMA webhook; GRANT ALL ON SCHEMA webhook TO PUBLIC;",
    );
    exec(&mut su, "ALTER SCHEMA webhook OWNER TO postgres");
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains("schema webhook grants CREATE to PUBLIC, who could add functions"),
        "{e}"
    );
    exec(
        &mut su,
        "REVOKE CREATE ON SCHEMA webhook FROM PUBLIC; CREATE EXTENSION pg_webhook;",
    );
}

#[test]
fn default_privileges_that_would_grant_the_private_tables_are_refused_by_create_extension() {
    // The installing superuser's default privileges would make reporting a reader of
    // webhook._subscriptions, secrets and all.
    let pg = Cluster::start(&[]);
    let mut su = pg.connect("postgres");
    exec(
        &mut su,
        "CREATE ROLE reporting LOGIN;
         ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO reporting;",
    );
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains(
            "default privileges would grant role \"reporting\" (default privileges of role \"postgres\" everywhere) rights on pg_webhook's private tables"
        ),
        "{e}"
    );
    exec(
        &mut su,
        "ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM reporting;
         CREATE EXTENSION pg_webhook;",
    );
    let mut reporting = pg.connect_as("postgres", "reporting");
    let e = error_of(&mut reporting, "SELECT secret FROM webhook._subscriptions");
    assert!(e.contains("permission denied"), "{e}");
}

#[test]
fn a_publication_of_schema_webhook_is_refused_by_create_extension() {
    // Its subscribers would get the private tables, secrets included.
    let pg = Cluster::start(&[]);
    let mut su = pg.connect("postgres");
    exec(
        &mut su,
        "CREATE SCHEMA webhook; CREATE PUBLICATION everything FOR TABLES IN SCHEMA webhook;",
    );
    let e = error_of(&mut su, "CREATE EXTENSION pg_webhook");
    assert!(
        e.contains("schema webhook is in publication \"everything\""),
        "{e}"
    );
}

#[test]
fn the_tables_owner_cannot_replace_a_capture_trigger() {
    // CREATE OR REPLACE TRIGGER over a capture trigger stopped the capture at once, while the
    // subscription looked live (no status_reason) until the worker's trigger check ended it
    // seconds later, saying the trigger was dropped: writes in between were never sent.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE tom LOGIN; GRANT CREATE ON SCHEMA public TO tom;
         SET ROLE tom;
         CREATE TABLE items (id int PRIMARY KEY);
         CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         RESET ROLE;",
    );
    let (id, _) = subscribe(&mut su, "items", "items", &rx.url("/items"), "");
    let mut tom = pg.connect_as("postgres", "tom");
    let e = error_of(
        &mut tom,
        &format!(
            "CREATE OR REPLACE TRIGGER pg_webhook_{id}_insert AFTER INSERT ON items
               FOR EACH STATEMENT EXECUTE FUNCTION nothing()"
        ),
    );
    assert!(
        e.contains(&format!(
            "trigger pg_webhook_{id}_insert on public.items is a webhook subscription's and cannot be replaced"
        )),
        "{e}"
    );
    exec(&mut tom, "INSERT INTO items VALUES (1)");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 1);
    assert_eq!(
        text(
            &mut su,
            "SELECT status FROM webhook.subscriptions WHERE name = 'items'"
        )
        .as_deref(),
        Some("active")
    );
}
