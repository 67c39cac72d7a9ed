//! Findings of a hostile review of the features of issue 13, OAuth 2.0 client credentials: a
//! token URL that resolves to a refused address, a token endpoint that redirects or never
//! answers. Each test is the attack, and passes once it no longer works.

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply};
use support::{exec, subscribe, text, WAIT};

/// What the subscription's recorded attempts say (newest first), or "" while there are none.
fn attempt_errors(db: &mut postgres::Client) -> String {
    text(
        db,
        "SELECT COALESCE(string_agg(COALESCE(error, 'HTTP ' || status_code), ' | '
                ORDER BY started_at DESC), '') FROM webhook.attempts",
    )
    .unwrap_or_default()
}

fn oauth_table(pg: &Cluster) -> postgres::Client {
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    db
}

/// Subscribes `t` to `url` with one attempt and OAuth 2.0 credentials at `token_url`, writes a
/// row, and returns the errors of its attempt once it is recorded.
fn one_attempt_behind(db: &mut postgres::Client, url: &str, token_url: &str) -> String {
    subscribe(
        db,
        "o",
        "t",
        url,
        &format!(
            r#", max_attempts => 1, auth => '{{"type": "oauth2", "token_url": "{token_url}", "client_id": "c", "client_secret": "s3cret"}}'"#
        ),
    );
    exec(db, "INSERT INTO t VALUES (1)");
    let mut errors = String::new();
    wait_until(WAIT, "the attempt to be recorded", || {
        errors = attempt_errors(db);
        !errors.is_empty()
    });
    errors
}

/// Attack (hostile owner / DNS): a `token_url` whose name resolves to an address the policy
/// refuses passes `subscribe` (only IP literals are checked there); the worker must refuse it
/// when it connects, after resolving, and send the client secret nowhere. The receiver is
/// allowed by its host name (`vm`), `localhost` (127.0.0.1) is not.
#[test]
fn a_token_url_resolving_to_a_refused_address_is_refused_when_connecting() {
    let pg = Cluster::start(&["pg_webhook.allowed_destinations = 'vm'"]);
    let mut db = oauth_table(&pg);
    let tokens = Receiver::start();
    let rx = Receiver::start();
    let token_url = tokens.url("/token").replace("127.0.0.1", "localhost");
    let errors = one_attempt_behind(
        &mut db,
        &rx.url("/hook").replace("127.0.0.1", "vm"),
        &token_url,
    );
    assert!(
        errors.contains("oauth2 token request failed")
            && errors.contains("destination refused")
            && errors.contains("127.0.0.1"),
        "{errors}"
    );
    assert!(
        !errors.contains("s3cret") && !errors.contains("/token"),
        "{errors}"
    );
    assert_eq!(tokens.count(), 0, "the token endpoint was reached");
    assert_eq!(
        rx.count(),
        0,
        "the receiver was sent the event without a token"
    );
}

/// Attack (hostile token endpoint): answer the token request with a redirect to another host,
/// hoping the worker follows it with the client's Basic credentials.
#[test]
fn a_token_endpoint_cannot_redirect_the_client_credentials_elsewhere() {
    let pg = Cluster::start(&[]);
    let mut db = oauth_table(&pg);
    let thief = Receiver::start();
    let steal = thief.url("/steal");
    let tokens = Receiver::with(move |_, _| Reply::Full {
        status: 307,
        headers: vec![("location".into(), steal.clone())],
        body: String::new(),
    });
    let rx = Receiver::start();
    let errors = one_attempt_behind(&mut db, &rx.url("/hook"), &tokens.url("/token"));
    assert!(
        errors.contains("the token endpoint answered HTTP 307"),
        "{errors}"
    );
    assert_eq!(tokens.count(), 1);
    assert_eq!(thief.count(), 0, "the redirect was followed");
    assert_eq!(rx.count(), 0);
}

/// Attack (hostile token endpoint): never answer. Deliveries of other subscriptions must go on
/// meanwhile (the token request runs on the HTTP thread with the deliveries of everyone).
#[test]
fn a_token_endpoint_that_never_answers_holds_up_no_other_subscription() {
    let pg = Cluster::start(&[]);
    let mut db = oauth_table(&pg);
    exec(&mut db, "CREATE TABLE u (id int PRIMARY KEY)");
    let tokens = Receiver::with(|_, _| Reply::Hang(std::time::Duration::from_secs(120)));
    let rx = Receiver::start();
    subscribe(
        &mut db,
        "slow",
        "t",
        &rx.url("/slow"),
        &format!(
            r#", timeout => '100 s', auth => '{{"type": "oauth2", "token_url": "{}", "client_id": "c", "client_secret": "s"}}'"#,
            tokens.url("/token")
        ),
    );
    subscribe(&mut db, "plain", "u", &rx.url("/plain"), "");
    exec(
        &mut db,
        "INSERT INTO t SELECT generate_series(1, 50); INSERT INTO u VALUES (1);",
    );
    wait_until(WAIT, "the token endpoint to be asked", || {
        tokens.count() >= 1
    });
    exec(&mut db, "INSERT INTO u VALUES (2)");
    let got = rx.wait_for(2, std::time::Duration::from_secs(20));
    assert!(
        got.iter().all(|r| r.path == "/plain") && got.len() == 2,
        "{:?}",
        got.iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        tokens.count(),
        1,
        "one token request for the waiting deliveries"
    );
}
