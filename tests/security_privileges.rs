//! The privilege model holds for ordinary roles: only admins who may read a table subscribe it,
//! secrets stay with their owners, writers cannot forge events, and the extension's functions
//! cannot be hijacked through search_path. Also what is taken rather than refused: a
//! partitioned table, subscribed as a whole, and an oversized payload, which dies with the
//! reason.

mod support;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{error_of, subscribe, WAIT};

#[test]
fn a_partitioned_table_is_subscribed_as_a_whole() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute(
        "CREATE TABLE measures (id int, at date, v int) PARTITION BY RANGE (at);
         CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    )
    .unwrap();
    subscribe(&mut db, "measures", "measures", &rx.url("/m"), "");
    db.batch_execute(
        "INSERT INTO measures VALUES (1, '2025-06-01', 10), (2, '2026-06-01', 20);
         UPDATE measures SET at = '2026-02-01' WHERE id = 1;  -- moves between partitions
         DELETE FROM measures WHERE id = 2;",
    )
    .unwrap();
    let got = rx.wait_for(4, WAIT);
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["table"], "measures", "events name the partitioned table");
            b["type"].as_str().unwrap().to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["DELETE", "INSERT", "INSERT", "UPDATE"]);
    let update = got
        .iter()
        .find(|r| r.json()["type"] == "UPDATE")
        .unwrap()
        .json();
    assert_eq!(update["old_record"]["at"], "2025-06-01");
    assert_eq!(update["record"]["at"], "2026-02-01");
}

#[test]
fn an_oversized_payload_dies_with_the_reason_instead_of_being_truncated() {
    let pg = Cluster::start(&["pg_webhook.max_payload_bytes = '64kB'"]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    db.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        .unwrap();
    subscribe(&mut db, "docs", "docs", &rx.url("/d"), "");
    db.batch_execute("INSERT INTO docs VALUES (1, repeat('x', 100000)), (2, 'small')")
        .unwrap();
    wait_until(WAIT, "both events to finish", || {
        db.query_one(
            "SELECT count(*) FROM webhook.events WHERE status <> 'pending'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 2
    });
    let (status, error): (String, String) = db
        .query_one(
            "SELECT status, last_error FROM webhook.events WHERE record->>'id' = '1'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "dead");
    assert!(
        error.contains("over pg_webhook.max_payload_bytes (65536)"),
        "{error}"
    );
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["record"]["id"], 2);
}

#[test]
fn only_admins_who_can_read_a_table_subscribe_it_and_secrets_stay_with_owners() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    let rx = Receiver::start();
    su.batch_execute(
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN; CREATE ROLE mallory LOGIN;
         GRANT webhook_admin TO alice, bob, carol;
         CREATE TABLE payroll (id int PRIMARY KEY, salary int);
         CREATE TABLE public_news (id int PRIMARY KEY, title text);
         GRANT SELECT, TRIGGER ON payroll TO alice;
         GRANT SELECT, TRIGGER ON public_news TO alice, bob;
         GRANT SELECT, INSERT ON payroll TO mallory;",
    )
    .unwrap();
    let mut alice = pg.connect_as("postgres", "alice");
    let mut bob = pg.connect_as("postgres", "bob");
    let mut carol = pg.connect_as("postgres", "carol");
    let mut mallory = pg.connect_as("postgres", "mallory");

    // Not an admin: cannot even call it.
    let e = error_of(
        &mut mallory,
        &format!(
            "SELECT webhook.subscribe('m', 'payroll', '{}')",
            rx.url("/m")
        ),
    );
    assert!(e.contains("permission denied for"), "{e}");
    // An admin who cannot read the table cannot make its rows leave the database.
    let e = error_of(
        &mut bob,
        &format!(
            "SELECT webhook.subscribe('b', 'payroll', '{}')",
            rx.url("/b")
        ),
    );
    assert!(
        e.contains("permission denied to subscribe to public.payroll"),
        "{e}"
    );
    assert!(e.contains("GRANT SELECT ON public.payroll"), "{e}");
    // An admin who can read it may.
    let (_, secret) = subscribe(
        &mut alice,
        "payroll_hook",
        "payroll",
        &rx.url("/p"),
        ", headers => '{\"Authorization\": \"Bearer s3cret\"}'",
    );
    subscribe(&mut alice, "news_hook", "public_news", &rx.url("/n"), "");

    // alice (owner) sees her secret and headers; bob sees only what he may read, without them.
    let seen: Vec<(String, Option<String>, Option<String>)> = bob
        .query(
            "SELECT name, secret, headers::text FROM webhook.subscriptions ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(seen, vec![("news_hook".to_string(), None, None)]);
    let mine: String = alice
        .query_one(
            "SELECT secret FROM webhook.subscriptions WHERE name = 'payroll_hook'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mine, secret);
    // carol reads neither table: she sees no subscription and no event.
    assert_eq!(
        carol
            .query("SELECT * FROM webhook.subscriptions", &[])
            .unwrap()
            .len(),
        0
    );

    // mallory writes payroll: the change is captured although she has no rights on the queue,
    // and she can neither forge events nor read the private tables.
    mallory
        .batch_execute("INSERT INTO payroll VALUES (1, 100)")
        .unwrap();
    rx.wait_for(1, WAIT);
    for sql in [
        "INSERT INTO webhook._event_queue (id, subscription_id, op, table_schema, table_name) VALUES (1, 1, 'INSERT', 'public', 'payroll')",
        "SELECT * FROM webhook._subscriptions",
        "SELECT * FROM webhook._event_archive",
        "UPDATE webhook._subscriptions SET url = 'https://evil.example/'",
        "SELECT * FROM webhook.events",
    ] {
        let e = error_of(&mut mallory, sql);
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    // Events and attempts follow the table's privileges.
    let count = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    wait_until(WAIT, "the payroll event to be delivered", || {
        count(
            &mut alice,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    assert_eq!(count(&mut bob, "SELECT count(*) FROM webhook.events"), 0);
    assert_eq!(count(&mut bob, "SELECT count(*) FROM webhook.attempts"), 0);
    assert_eq!(
        count(&mut alice, "SELECT count(*) FROM webhook.attempts"),
        1
    );

    // Only the owner (or a superuser) may unsubscribe.
    let e = error_of(&mut bob, "SELECT webhook.unsubscribe('news_hook')");
    assert!(e.contains("only its owner or a superuser"), "{e}");
    alice
        .batch_execute("SELECT webhook.unsubscribe('news_hook')")
        .unwrap();
}

#[test]
fn a_hostile_search_path_cannot_hijack_the_extension() {
    let pg = Cluster::start(&[]);
    let mut su = pg.client_with_extension();
    let rx = Receiver::start();
    su.batch_execute(
        "CREATE ROLE eve LOGIN; GRANT webhook_admin TO eve;
         CREATE SCHEMA evil AUTHORIZATION eve;
         CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT, INSERT, TRIGGER ON t TO eve;",
    )
    .unwrap();
    let mut eve = pg.connect_as("postgres", "eve");
    // Functions and operators that would run as the extension owner if resolved by name.
    eve.batch_execute(
        "CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked to_jsonb'; END $$;
         CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked now'; END $$;
         CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked nextval'; END $$;
         CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked ='; END $$;
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
         SET search_path = evil, pg_catalog, public;",
    )
    .unwrap();
    let (_, secret) = subscribe(&mut eve, "t_hook", "public.t", &rx.url("/t"), "");
    eve.batch_execute("INSERT INTO public.t VALUES (1)")
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    got[0].verify(&secret).unwrap();
    eve.batch_execute("SELECT webhook.unsubscribe('t_hook')")
        .unwrap();
    // The extension's own SQL functions all pin search_path (the C trigger runs no SQL).
    let unpinned: Vec<String> = su
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE p.pronamespace = 'webhook'::regnamespace
                AND l.lanname <> 'c'
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        unpinned.is_empty(),
        "functions without a pinned search_path: {unpinned:?}"
    );
}
