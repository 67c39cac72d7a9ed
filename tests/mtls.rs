//! Receivers that demand a TLS client certificate (mTLS), against real clusters: a loopback
//! HTTPS receiver that lets only certificates of its client CA through the handshake.

mod support;

use std::path::Path;

use postgres::Client;
use support::cluster::{path_str, wait_until, Cluster};
use support::receiver::Receiver;
use support::tls::{HttpsReceiver, Pki};
use support::{count, error_of, exec, subscribe, text, WAIT};

const CLIENT_CERT: &str = include_str!("../src/core/testdata/client_ec.pem");
const CLIENT_KEY: &str = include_str!("../src/core/testdata/client_ec.key");
const OTHER_KEY: &str = include_str!("../src/core/testdata/other_ec.key");

fn cluster_trusting(ca: &Path) -> Cluster {
    Cluster::start(&[&format!("pg_webhook.ca_bundle = '{}'", path_str(ca))])
}

/// Retried quickly and for long: refused attempts pile up within a test's wait.
const RETRY: &str =
    ", retry_schedule => ARRAY['200 milliseconds']::interval[], max_attempts => 100";

/// The subscribe arguments that present the client certificate `pki` made (which its receiver
/// accepts).
fn pki_certificate(pki: &Pki) -> String {
    let quote = |s: &str| s.replace('\'', "''");
    format!(
        ", client_cert => '{}', client_key => '{}'",
        quote(&pki.read("client.pem")),
        quote(&pki.read("client.key"))
    )
}

fn delivered(db: &mut Client, subscription: i32) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM webhook.events WHERE subscription_id = {subscription} AND status = 'delivered'"
        ),
    )
}

fn uid(db: &mut Client, subscription: i32) -> String {
    text(
        db,
        &format!("SELECT uid FROM webhook.subscriptions WHERE id = {subscription}"),
    )
    .unwrap_or_default()
}

#[test]
fn a_receiver_that_demands_a_client_certificate_takes_the_right_one_only() {
    let pki = Pki::new("mtls");
    let rx = HttpsReceiver::demanding_client_certificates(&pki);
    let pg = cluster_trusting(&pki.path("ca.pem"));
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (right, _) = subscribe(
        &mut db,
        "right",
        "t",
        &rx.url(),
        &format!("{}{RETRY}", pki_certificate(&pki)),
    );
    let (none, _) = subscribe(&mut db, "none", "t", &rx.url(), RETRY);
    // A valid pair, but its certificate is not from the receiver's client CA.
    let (wrong, _) = subscribe(
        &mut db,
        "wrong",
        "t",
        &rx.url(),
        &format!(", client_cert => '{CLIENT_CERT}', client_key => '{CLIENT_KEY}'{RETRY}"),
    );
    exec(&mut db, "INSERT INTO t VALUES (1), (2), (3)");
    wait_until(WAIT, "the right certificate's events to arrive", || {
        delivered(&mut db, right) == 3
    });
    for sub in [none, wrong] {
        wait_until(WAIT, "refused attempts to be recorded", || {
            count(
                &mut db,
                &format!(
                    "SELECT count(*) FROM webhook.attempts WHERE subscription_id = {sub} AND outcome = 'retry' AND error IS NOT NULL"
                ),
            ) >= 3
        });
    }
    let right_uid = uid(&mut db, right);
    let received = rx.received();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(received
        .iter()
        .all(|id| id.starts_with(&format!("msg_{right_uid}_"))));
    assert_eq!(
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.events WHERE subscription_id IN ({none}, {wrong}) AND status = 'pending'"
            )
        ),
        6,
        "the refused events stay queued"
    );

    // The right certificate, given later, is used from the next attempt on.
    let changed: bool = db
        .query_one(
            "SELECT webhook.set_client_certificate('wrong', $1, $2)",
            &[&pki.read("client.pem"), &pki.read("client.key")],
        )
        .unwrap()
        .get(0);
    assert!(changed);
    wait_until(
        WAIT,
        "the events with the new certificate to arrive",
        || delivered(&mut db, wrong) == 3,
    );
    assert_eq!(rx.received().len(), 6);
    assert_eq!(delivered(&mut db, none), 0);
}

/// OAuth token requests go over the connections of the deliveries: the token endpoint's
/// certificate is trusted through `pg_webhook.ca_bundle`, and a subscription's client
/// certificate is presented to it as to the receiver; no protocol is offered by ALPN, as for
/// the deliveries (HTTP/1.1, which a server assumes without it; through reqwest, token requests
/// offered `http/1.1`). Without a certificate the token endpoint refuses the handshake, and the
/// event waits.
#[test]
fn token_requests_present_the_client_certificate_and_trust_the_ca_bundle() {
    let pki = Pki::new("mtls-token");
    let rx = HttpsReceiver::demanding_client_certificates(&pki);
    let pg = cluster_trusting(&pki.path("ca.pem"));
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let auth = format!(
        r#"{{"type": "oauth2", "token_url": "https://127.0.0.1:{}/token", "client_id": "c", "client_secret": "s"}}"#,
        rx.port
    );
    let (with_cert, _) = subscribe(
        &mut db,
        "with_cert",
        "t",
        &rx.url(),
        &format!("{}, auth => '{auth}'{RETRY}", pki_certificate(&pki)),
    );
    let (without, _) = subscribe(
        &mut db,
        "without",
        "t",
        &rx.url(),
        &format!(", auth => '{auth}'{RETRY}"),
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the event with a certificate to arrive", || {
        delivered(&mut db, with_cert) == 1
    });
    wait_until(WAIT, "the token request without one to fail", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.attempts WHERE subscription_id = {without} AND outcome = 'retry' AND error IS NOT NULL"
            ),
        ) >= 2
    });
    assert_eq!(
        rx.token_requests(),
        vec!["client_credentials None".to_string()]
    );
    assert_eq!(rx.authorizations(), vec!["Bearer tok-tls".to_string()]);
    assert_eq!(delivered(&mut db, without), 0);
}

/// Subscribes table `t` as `c`, presenting the core tests' certificate (no receiver listens).
fn subscribe_with_test_certificate(db: &mut Client) {
    subscribe(
        db,
        "c",
        "t",
        "http://127.0.0.1:9/hook",
        &format!(", client_cert => '{CLIENT_CERT}', client_key => '{CLIENT_KEY}'"),
    );
}

/// The subscriptions' certificates, keys and events: what a refused call must leave as it was.
fn state(db: &mut Client) -> String {
    text(
        db,
        "SELECT count(*) || ' ' || coalesce(string_agg(coalesce(md5(client_cert), '-') || '/' || coalesce(md5(client_key), '-'), ',' ORDER BY id), '')
           || ' ' || (SELECT count(*) FROM webhook.events) FROM webhook._subscriptions",
    )
    .unwrap_or_default()
}

#[test]
fn bad_client_certificates_are_refused_and_change_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    subscribe_with_test_certificate(&mut db);
    let before = state(&mut db);
    let cases = [
        (
            "not a certificate".to_string(),
            CLIENT_KEY.to_string(),
            "client_cert holds no PEM certificate: give the client's certificate (-----BEGIN CERTIFICATE-----), then any intermediates",
        ),
        (
            CLIENT_CERT.to_string(),
            CLIENT_CERT.to_string(),
            "client_key holds no PEM private key: give an unencrypted key (-----BEGIN PRIVATE KEY-----, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
        ),
        (
            CLIENT_CERT.replace("-----END CERTIFICATE-----", ""),
            CLIENT_KEY.to_string(),
            "client_cert is not valid PEM: a section has no END line",
        ),
        (
            CLIENT_CERT.to_string(),
            OTHER_KEY.to_string(),
            "client_key does not match client_cert: give the private key of the first certificate in client_cert",
        ),
    ];
    for (cert, key, expected) in &cases {
        let e = error_of(
            &mut db,
            &format!("SELECT webhook.subscribe('n', 't', 'http://127.0.0.1:9/', client_cert => '{cert}', client_key => '{key}')"),
        );
        assert_eq!(&e, expected);
        let e = error_of(
            &mut db,
            &format!("SELECT webhook.set_client_certificate('c', '{cert}', '{key}')"),
        );
        assert_eq!(&e, expected);
        assert_eq!(state(&mut db), before);
    }
    let e = error_of(
        &mut db,
        &format!("SELECT webhook.subscribe('n', 't', 'http://127.0.0.1:9/', client_cert => '{CLIENT_CERT}')"),
    );
    assert_eq!(
        e,
        "client_cert is given without client_key: give the certificate's private key too"
    );
    let e = error_of(
        &mut db,
        &format!("SELECT webhook.set_client_certificate('c', NULL, '{CLIENT_KEY}')"),
    );
    assert_eq!(
        e,
        "client_key is given without client_cert: give the key's certificate too"
    );
    assert_eq!(state(&mut db), before);
    // Two NULLs remove them.
    exec(
        &mut db,
        "SELECT webhook.set_client_certificate('c', NULL, NULL)",
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT coalesce(client_cert, client_key, 'none') FROM webhook.subscriptions"
        )
        .as_deref(),
        Some("none")
    );
}

#[test]
fn the_client_key_is_shown_to_the_owner_only() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    exec(
        &mut db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader; GRANT SELECT ON t TO reader",
    );
    subscribe_with_test_certificate(&mut db);
    assert_eq!(
        text(&mut db, "SELECT client_key FROM webhook.subscriptions").as_deref(),
        Some(CLIENT_KEY)
    );
    let mut reader = pg.connect_as("postgres", "reader");
    assert_eq!(
        text(
            &mut reader,
            "SELECT coalesce(client_cert, client_key, 'hidden') FROM webhook.subscriptions"
        )
        .as_deref(),
        Some("hidden")
    );
}

/// A stored certificate edited by hand past subscribe()'s checks (a private key pasted into
/// client_cert) fails that subscription's events with the reason and keeps them for a retry; the
/// worker lives on and the table's other subscription delivers its events.
#[test]
fn a_hand_edited_certificate_fails_its_own_subscription_only() {
    let pg = Cluster::start(&[]);
    let mut db = pg.client_with_extension();
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (good, _) = subscribe(&mut db, "good", "t", &rx.url("/good"), "");
    let (edited, _) = subscribe(&mut db, "edited", "t", &rx.url("/edited"), "");
    let worker = pg.worker_pid(&mut db);
    // Paused around the edit, so the worker has reloaded the edited row (resume tells it to)
    // before it claims the events.
    exec(&mut db, "SELECT webhook.pause('edited')");
    db.execute(
        "UPDATE webhook._subscriptions SET client_cert = $1, client_key = $2 WHERE id = $3",
        &[&format!("{CLIENT_CERT}\n{OTHER_KEY}"), &CLIENT_KEY, &edited],
    )
    .unwrap();
    exec(&mut db, "SELECT webhook.resume('edited')");
    exec(&mut db, "INSERT INTO t VALUES (1), (2), (3)");

    wait_until(WAIT, "the other subscription's events to arrive", || {
        delivered(&mut db, good) == 3
    });
    wait_until(WAIT, "the edited subscription's attempts to fail", || {
        count(
            &mut db,
            &format!(
                "SELECT count(DISTINCT event_id) FROM webhook.attempts WHERE subscription_id = {edited}
                  AND error LIKE 'subscription {edited} is misconfigured: client_cert holds a private key: %'"
            ),
        ) == 3
    });
    assert_eq!(
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.events WHERE subscription_id = {edited} AND status = 'pending'"
            )
        ),
        3,
        "the failed events wait for a fix"
    );
    assert_eq!(delivered(&mut db, edited), 0);
    assert!(
        rx.requests().iter().all(|r| r.path == "/good"),
        "{:?}",
        rx.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(pg.worker_pid(&mut db), worker, "the worker went on");
}
