//! Ways in: what a hostile webhook_admin member, a table writer or a CREATEROLE user tries, and
//! what stops them. One scenario per test; each fails on a pg_webhook that lets them in.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, error_of, exec, subscribe, text, WAIT};

/// alice subscribes her table; mallory, another webhook_admin member, owns `mine` and a
/// function that would make her superuser if it ran as the bootstrap superuser.
fn victim_and_mallory(pg: &Cluster, rx: &Receiver) -> (postgres::Client, postgres::Client, i32) {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE mallory LOGIN;
         GRANT webhook_admin TO alice, mallory;
         GRANT CREATE ON SCHEMA public TO alice, mallory;",
    );
    let mut alice = pg.connect_as("postgres", "alice");
    exec(&mut alice, "CREATE TABLE orders (id int PRIMARY KEY)");
    let (id, _) = subscribe(&mut alice, "orders", "orders", &rx.url("/alice"), "");
    let mut mallory = pg.connect_as("postgres", "mallory");
    exec(
        &mut mallory,
        "CREATE TABLE mine (id int PRIMARY KEY);
         CREATE FUNCTION public.my_fn() RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN true; END $$;",
    );
    (su, mallory, id)
}

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
fn a_filter_cannot_change_the_writers_session() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE mallory LOGIN; GRANT webhook_admin TO mallory;
         CREATE TABLE payments (id int PRIMARY KEY);
         GRANT SELECT, TRIGGER ON payments TO mallory;",
    );
    let mut mallory = pg.connect_as("postgres", "mallory");
    subscribe(
        &mut mallory,
        "leaky",
        "payments",
        &rx.url("/p"),
        ", filter => $$pg_catalog.set_config('search_path', 'mallory_was_here, pg_catalog', false) IS NOT NULL
                      AND pg_catalog.set_config('mallory.marker', 'leaked', false) IS NOT NULL$$",
    );
    let before = text(&mut su, "SELECT current_setting('search_path')");
    exec(&mut su, "INSERT INTO payments VALUES (1)");
    assert_eq!(
        text(&mut su, "SELECT current_setting('search_path')"),
        before
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT NULLIF(current_setting('mallory.marker', true), '')"
        ),
        None,
        "a setting the filter made survived it"
    );
    // And inside a transaction block too.
    exec(
        &mut su,
        "BEGIN; INSERT INTO payments VALUES (2); SELECT 1; COMMIT;",
    );
    assert_eq!(
        text(&mut su, "SELECT current_setting('search_path')"),
        before
    );
    // The filter ran (it is true): both rows were sent.
    rx.wait_for(2, WAIT);
    // A filter cannot change role either: it runs as a security-restricted operation.
    subscribe(
        &mut mallory,
        "climber",
        "payments",
        &rx.url("/c"),
        ", filter => $$pg_catalog.set_config('role', 'postgres', false) IS NOT NULL$$",
    );
    let e = error_of(&mut su, "INSERT INTO payments VALUES (3)");
    assert!(e.contains("cannot set parameter \"role\""), "{e}");
}

#[test]
fn a_callback_cannot_change_the_callback_runners_session() {
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE seen (id int, marker text, path text);
         CREATE FUNCTION public.nosy(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.seen VALUES ((event->'record'->>'id')::int,
                 NULLIF(current_setting('mallory.marker', true), ''), current_setting('search_path'));
             PERFORM set_config('mallory.marker', 'leaked', false);
             PERFORM set_config('search_path', 'mallory_was_here, pg_catalog', false);
         END $$;",
    );
    subscribe(
        &mut su,
        "t",
        "t",
        &rx.url("/t"),
        ", callback => 'public.nosy(jsonb)'",
    );
    exec(&mut su, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the first callback", || {
        count(&mut su, "SELECT count(*) FROM seen") == 1
    });
    exec(&mut su, "INSERT INTO t VALUES (2)");
    wait_until(WAIT, "the second callback", || {
        count(&mut su, "SELECT count(*) FROM seen") == 2
    });
    let second: (Option<String>, String) = su
        .query_one("SELECT marker, path FROM seen WHERE id = 2", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        second.0, None,
        "a setting the first callback made leaked into the next"
    );
    assert_eq!(second.1, "pg_catalog, pg_temp");
}

#[test]
fn a_callback_cannot_reach_what_another_owners_callback_left_in_the_runner() {
    // One runner process ran every owner's callbacks, one after another: a dblink connection
    // that bob's callback opened (authenticated as bob, committing on its own) and a
    // session-level advisory lock    // it took were still there when alice's callback ran, which could then run SQL as bob
    // (read his tables, grant his rights to herself) and hold or free his lock.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, mut alice, mut bob) = support::bob::alice_and_bob(&pg);
    // dblink_connect_u: the cluster trusts every local login, and plain dblink_connect wants a
    // password from a role that is not a superuser.
    exec(
        &mut su,
        "CREATE EXTENSION dblink;
         GRANT EXECUTE ON FUNCTION public.dblink_connect_u(text, text) TO bob;",
    );
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE bob_ran (pid int);
         CREATE FUNCTION public.bob_leaves_state(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM public.dblink_connect_u('bobconn', 'host=127.0.0.1 dbname=postgres user=bob port='
                 OPERATOR(pg_catalog.||) pg_catalog.current_setting('port'));
             PERFORM pg_catalog.pg_advisory_lock(42);
             INSERT INTO public.bob_ran VALUES (pg_catalog.pg_backend_pid());
         END $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        ", callback => 'public.bob_leaves_state(jsonb)'",
    );
    exec(
        &mut alice,
        "CREATE TABLE alices (id int PRIMARY KEY);
         CREATE TABLE alice_saw (pid int, connections text[], locks bigint);
         CREATE FUNCTION public.alice_looks(event jsonb) RETURNS void LANGUAGE sql AS $$
             INSERT INTO public.alice_saw
             SELECT pg_catalog.pg_backend_pid(),
                    COALESCE(public.dblink_get_connections(), '{}'),
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks
                      WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())
         $$;",
    );
    subscribe(
        &mut alice,
        "alices",
        "alices",
        &rx.url("/alice"),
        ", callback => 'public.alice_looks(jsonb)'",
    );
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(WAIT, "bob's callback", || {
        count(&mut bob, "SELECT count(*) FROM bob_ran") == 1
    });
    exec(&mut alice, "INSERT INTO alices VALUES (1)");
    wait_until(WAIT, "alice's callback", || {
        count(&mut alice, "SELECT count(*) FROM alice_saw") == 1
    });
    let (connections, locks): (Vec<String>, i64) = alice
        .query_one("SELECT connections, locks FROM alice_saw", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (connections, locks),
        (Vec::<String>::new(), 0),
        "alice's callback found what bob's left in its session"
    );
}

#[test]
fn a_callbacks_session_advisory_lock_ends_with_it() {
    // A session-level advisory lock a callback took stayed with the runner until it exited:
    // taken by bob's callback, nobody could take it again, bob's own sessions included.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let (mut su, _alice, mut bob) = support::bob::alice_and_bob(&pg);
    exec(
        &mut bob,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE bob_ran (id int);
         CREATE FUNCTION public.bob_locks(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_catalog.pg_advisory_lock(42);
             INSERT INTO public.bob_ran VALUES ((event->'record'->>'id')::int);
             IF (event->'record'->>'id')::int = 2 THEN
                 RAISE EXCEPTION 'bob fails after locking';
             END IF;
         END $$;",
    );
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        ", callback => 'public.bob_locks(jsonb)'",
    );
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42";
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(WAIT, "bob's callback", || {
        count(&mut bob, "SELECT count(*) FROM bob_ran") == 1
    });
    assert_eq!(count(&mut su, held), 0, "the callback's lock outlived it");
    // A failed callback's effects are rolled back; a session lock is not, unless released.
    exec(&mut bob, "INSERT INTO bobs VALUES (2)");
    wait_until(WAIT, "bob's failed callback", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook.events WHERE callback_error LIKE '%bob fails after locking%'",
        ) == 1
    });
    assert_eq!(
        count(&mut su, held),
        0,
        "the failed callback's lock outlived it"
    );
}

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
fn a_backfill_filter_that_closes_its_expression_is_refused() {
    // Closing the filter's expression early and going on with a UNION changed the type of the
    // order key column the chunk reads raw: worker 0 crashed, and the server with it, again and
    // again.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE TABLE t (id int PRIMARY KEY, amount numeric); INSERT INTO t VALUES (1, 2.5);",
    );
    subscribe(
        &mut su,
        "t",
        "t",
        &rx.url("/t"),
        ", order_key => ARRAY['amount']",
    );
    let e = error_of(
        &mut su,
        "SELECT webhook.backfill('t', $$true) THEN true ELSE false END FROM (SELECT new.*) AS \"t\") AS pass) AS f UNION ALL SELECT NULL::pg_catalog.jsonb, true, ARRAY['1'], 1.5::pg_catalog.float8 --$$)",
    );
    assert!(e.contains("filter is not a valid expression"), "{e}");
    // A filter that is one expression is taken, and its rows go out.
    exec(&mut su, "SELECT webhook.backfill('t', 'amount > 1')");
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 1);
}

#[test]
fn a_subscription_filter_or_payload_that_is_not_one_expression_is_refused() {
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let mut su = pg.client_with_extension();
    exec(&mut su, "CREATE TABLE t (id int PRIMARY KEY)");
    for (option, text) in [
        ("filter", "NEW.id > 0) FROM pg_class WHERE (true"),
        ("filter", "true) UNION ALL SELECT (false"),
        ("payload", "to_jsonb(NEW)), (to_jsonb(NEW)"),
    ] {
        let e = error_of(
            &mut su,
            &format!(
                "SELECT webhook.subscribe('t', 't', '{}', {option} => $${text}$$)",
                rx.url("/t")
            ),
        );
        assert!(
            e.contains(&format!("{option} must be one expression")),
            "{option} {text}: {e}"
        );
    }
}

#[test]
fn a_callback_in_a_schema_its_owner_may_not_use_is_refused() {
    // admin.apply is guarded by its schema alone (functions are PUBLIC's to execute): mallory
    // cannot name it, but she can read its OID in pg_proc, and a callback is called by OID.
    let pg = Cluster::start(&[]);
    let rx = Receiver::start();
    let (mut su, mut mallory, _) = victim_and_mallory(&pg, &rx);
    exec(
        &mut su,
        "CREATE SCHEMA admin; CREATE TABLE admin.applied (event jsonb);
         CREATE FUNCTION admin.apply(e jsonb) RETURNS void LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog AS 'INSERT INTO admin.applied VALUES (e)';",
    );
    let oid = count(
        &mut su,
        "SELECT 'admin.apply(jsonb)'::regprocedure::oid::bigint",
    );
    let e = error_of(
        &mut mallory,
        &format!(
            "SELECT webhook.subscribe('mine', 'mine', '{}', callback => {oid}::oid::regprocedure)",
            rx.url("/mine")
        ),
    );
    assert!(
        e.contains("permission denied for callback") && e.contains("USAGE on its schema"),
        "{e}"
    );
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
