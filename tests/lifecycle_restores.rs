//! The extension carried through pg_dump / pg_restore: subscriptions and secrets kept, the
//! queue not, and each filter still running as its owner in another cluster.

mod support;

use std::time::Duration;

use postgres::Client;
use support::cluster::Cluster;
use support::receiver::Receiver;
use support::{subscribe, WAIT};

/// (name, uid, secret, status) of every subscription.
fn subscriptions(db: &mut Client) -> Vec<(String, String, String, String)> {
    db.query(
        "SELECT name, uid, secret, status FROM webhook.subscriptions ORDER BY name",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn pg_dump_and_pg_restore_keep_subscriptions_but_not_the_queue() {
    // The worker serves the restored database.
    let pg = Cluster::start(&[
        "pg_webhook.database = 'restored'",
        "pg_webhook.poll_interval = '200ms'",
    ]);
    let mut admin = pg.connect("postgres");
    admin.batch_execute("CREATE DATABASE original").unwrap();
    let mut db = pg.connect("original");
    db.batch_execute(
        "CREATE EXTENSION pg_webhook;
         CREATE TABLE customers (id int PRIMARY KEY, email text, plan text)",
    )
    .unwrap();
    let rx = Receiver::start();
    let (_, secret) = subscribe(
        &mut db,
        "customers",
        "customers",
        &rx.url("/c"),
        ", events => ARRAY['insert'], exclude_columns => ARRAY['email'], filter => $$NEW.plan <> 'free'$$, format => 'standard'",
    );
    subscribe(&mut db, "held", "customers", &rx.url("/held"), "");
    db.batch_execute("SELECT webhook.pause('held')").unwrap();
    // No worker serves this database: these stay queued, and must not be restored.
    db.batch_execute("INSERT INTO customers VALUES (1, 'a@example.com', 'pro')")
        .unwrap();
    let before = subscriptions(&mut db);
    let last_event: i64 = db
        .query_one("SELECT max(id) FROM webhook.events", &[])
        .unwrap()
        .get(0);

    let dump = pg.dir.join("original.dump");
    pg.tool(
        "pg_dump",
        &["-Fc", "-d", "original", "-f", dump.to_str().unwrap()],
    );
    admin.batch_execute("CREATE DATABASE restored").unwrap();
    pg.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "restored", dump.to_str().unwrap()],
    );

    let mut restored = pg.connect("restored");
    let after = subscriptions(&mut restored);
    // Uids are renewed in the copy (tests/copies.rs); the rest survives.
    let without_uid = |subs: &[(String, String, String, String)]| -> Vec<(String, String, String)> {
        subs.iter()
            .map(|(name, _, secret, status)| (name.clone(), secret.clone(), status.clone()))
            .collect()
    };
    assert_eq!(
        without_uid(&before),
        without_uid(&after),
        "subscriptions and secrets survive"
    );
    let queued: i64 = restored
        .query_one("SELECT count(*) FROM webhook.events", &[])
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "queue contents are not dumped");

    // The restored triggers capture, and the worker delivers with the same secret and shape.
    restored
        .batch_execute(
            "INSERT INTO customers VALUES (2, 'b@example.com', 'pro'), (3, 'c@example.com', 'free')",
        )
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    got[0].verify(&secret).unwrap();
    let original_uid = &before[0].1;
    assert!(
        !got[0].id().starts_with(&format!("msg_{original_uid}_")),
        "the copy sends webhook-ids of its own: {}",
        got[0].id()
    );
    let body = got[0].json();
    assert_eq!(body["type"], "customers.insert");
    assert_eq!(body["data"]["record"]["id"], 2);
    assert!(body["data"]["record"].get("email").is_none(), "{body}");
    let new_event: i64 = restored
        .query_one("SELECT max(id) FROM webhook.events", &[])
        .unwrap()
        .get(0);
    assert!(
        new_event > last_event,
        "event ids continue after the dump, so webhook-ids are never reused"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx.requests().iter().all(|r| r.path == "/c"),
        "the paused subscription stays paused"
    );
    assert_eq!(rx.count(), 1, "the filter still applies after restore");
}

#[test]
fn a_restore_into_another_cluster_keeps_each_filter_running_as_its_owner() {
    // Roles get other OIDs in another cluster: a filter's owner must be found by the name the
    // dump carries, not by the OID it had where it was made.
    let source = Cluster::start(&[]);
    let mut db = source.client_with_extension();
    db.batch_execute(
        "CREATE ROLE filler1 LOGIN; CREATE ROLE filler2 LOGIN; CREATE ROLE alice LOGIN;
         GRANT webhook_admin TO alice; GRANT CREATE ON SCHEMA public TO alice;",
    )
    .unwrap();
    let rx = Receiver::start();
    let mut alice = source.connect_as("postgres", "alice");
    alice
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total int);
             CREATE FUNCTION public.big_enough(total int) RETURNS boolean LANGUAGE sql
                 AS $$ SELECT total > 10 $$;
             REVOKE EXECUTE ON FUNCTION public.big_enough(int) FROM PUBLIC;",
        )
        .unwrap();
    subscribe(
        &mut alice,
        "big",
        "orders",
        &rx.url("/big"),
        ", events => ARRAY['insert'], filter => $$public.big_enough(NEW.total)$$",
    );
    let dump = source.dir.join("app.dump");
    source.tool(
        "pg_dump",
        &["-Fc", "-d", "postgres", "-f", dump.to_str().unwrap()],
    );
    let target = Cluster::start(&[]);
    let mut admin = target.connect("postgres");
    // alice comes first here: her OID is another one than in the source.
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE filler1 LOGIN; CREATE ROLE filler2 LOGIN",
        )
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    let oid = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT oid::bigint FROM pg_roles WHERE rolname = 'alice'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_ne!(
        oid(&mut db),
        oid(&mut admin),
        "the test needs different OIDs"
    );
    target.tool(
        "pg_restore",
        &["--exit-on-error", "-d", "app", dump.to_str().unwrap()],
    );
    let mut restored = target.connect("app");
    restored
        .batch_execute("INSERT INTO orders VALUES (1, 5), (2, 50)")
        .unwrap();
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["record"]["id"], 2);
    let owner: String = restored
        .query_one("SELECT owner::text FROM webhook.subscriptions", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, "alice");
}
