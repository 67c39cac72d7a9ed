//! Receivers behind OAuth 2.0 client credentials, against real clusters: a loopback token
//! endpoint that counts what it issues, and a receiver that takes only its live tokens.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;
use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{count, error_of, exec, subscribe, text, WAIT};

/// A token endpoint answering `tok-1`, `tok-2`, … with `expires_in`; its first `failures`
/// requests get a 500 with an RFC 6749 error object instead.
fn token_endpoint(expires_in: u64, failures: usize) -> Receiver {
    Receiver::with(move |_, i| {
        if i < failures {
            return Reply::Full {
                status: 500,
                headers: vec![("content-type".into(), "application/json".into())],
                body: r#"{"error":"temporarily_unavailable","error_description":"try later"}"#
                    .into(),
            };
        }
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"access_token":"tok-{}","token_type":"Bearer","expires_in":{expires_in}}}"#,
                i + 1 - failures
            ),
        }
    })
}

/// A receiver that answers 204 to `Bearer tok-N` unless N is revoked (then 401), and 401 to
/// anything else.
fn receiver(revoked: Arc<Mutex<Vec<String>>>) -> Receiver {
    Receiver::with(move |req: &Request, _| match req.header("authorization") {
        Some(a) if a.starts_with("Bearer tok-") => {
            let token = a.trim_start_matches("Bearer ").to_string();
            if revoked.lock().unwrap().contains(&token) {
                Reply::Status(401)
            } else {
                Reply::Status(204)
            }
        }
        _ => Reply::Status(401),
    })
}

fn auth(tokens: &Receiver) -> String {
    format!(
        r#"{{"type": "oauth2", "token_url": "{}", "client_id": "pg webhook", "client_secret": "s3cr:t", "scope": "hooks:write"}}"#,
        tokens.url("/oauth/token")
    )
}

/// Subscribes table `t` as `o` to `rx`, with the credentials of token endpoint `tokens`.
fn subscribe_behind(db: &mut Client, tokens: &Receiver, rx: &Receiver, extra: &str) {
    subscribe(
        db,
        "o",
        "t",
        &rx.url("/hook"),
        &format!(", auth => '{}'{extra}", auth(tokens)),
    );
}

fn setup(pg: &Cluster) -> Client {
    let mut db = pg.client_with_extension();
    exec(&mut db, "CREATE TABLE t (id int PRIMARY KEY)");
    db
}

fn bearers(rx: &Receiver) -> Vec<String> {
    rx.accepted()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_token_is_fetched_once_and_reused_across_deliveries() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 0);
    let rx = receiver(Arc::default());
    subscribe_behind(&mut db, &tokens, &rx, "");
    for i in 0..10 {
        exec(
            &mut db,
            &format!(
                "INSERT INTO t SELECT generate_series({0} * 5 + 1, {0} * 5 + 5)",
                i
            ),
        );
    }
    rx.wait_for_answers(50, WAIT);
    wait_until(WAIT, "50 deliveries", || rx.accepted().len() == 50);
    assert_eq!(tokens.count(), 1, "one token for every delivery");
    assert!(bearers(&rx).iter().all(|b| b == "Bearer tok-1"));
    // RFC 6749 4.4.2 and 2.3.1: a form POST, the client in HTTP Basic, each part form-encoded.
    let request = &tokens.requests()[0];
    assert_eq!(request.path, "/oauth/token");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&request.body),
        "grant_type=client_credentials&scope=hooks%3Awrite"
    );
    // base64("pg+webhook:s3cr%3At")
    assert_eq!(
        request.header("authorization"),
        Some("Basic cGcrd2ViaG9vazpzM2NyJTNBdA==")
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.attempts WHERE outcome <> 'delivered'"
        ),
        0
    );
}

#[test]
fn a_token_is_fetched_again_once_it_expires() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    // Used for 4.8 s: six seconds less a fifth (event 2 must go out within that of event 1
    // on a loaded machine; 1.6 s was not always enough).
    let tokens = token_endpoint(6, 0);
    let rx = receiver(Arc::default());
    subscribe_behind(&mut db, &tokens, &rx, "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    exec(&mut db, "INSERT INTO t VALUES (2)");
    rx.wait_for_answers(2, WAIT);
    std::thread::sleep(Duration::from_millis(5000));
    exec(&mut db, "INSERT INTO t VALUES (3)");
    rx.wait_for_answers(3, WAIT);
    assert_eq!(
        bearers(&rx),
        ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    );
    assert_eq!(tokens.count(), 2);
}

#[test]
fn a_401_gets_one_new_token_and_the_same_attempt_succeeds() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 0);
    let revoked = Arc::new(Mutex::new(vec!["tok-1".to_string()]));
    let rx = receiver(revoked);
    subscribe_behind(&mut db, &tokens, &rx, "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    wait_until(WAIT, "the event to be delivered", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    let seen: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen, ["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(tokens.count(), 2, "exactly one new token after the 401");
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(attempt || ':' || status_code || ':' || outcome, ',') FROM webhook.attempts"
        )
        .as_deref(),
        Some("1:204:delivered"),
        "the retry with the new token is part of the same attempt"
    );
    // Later deliveries keep the new token.
    exec(&mut db, "INSERT INTO t VALUES (2)");
    rx.wait_for_answers(3, WAIT);
    assert_eq!(tokens.count(), 2);
}

#[test]
fn a_token_endpoint_failure_is_recorded_and_retried_until_it_works() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 2);
    let rx = receiver(Arc::default());
    subscribe_behind(
        &mut db,
        &tokens,
        &rx,
        ", retry_schedule => ARRAY['100 milliseconds']::interval[], max_attempts => 5",
    );
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    wait_until(WAIT, "the outcome to be recorded", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'",
        ) == 1
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(attempt || ':' || coalesce(error, status_code::text) || ':' || outcome, ' | ' ORDER BY attempt) FROM webhook.attempts"
        )
        .as_deref(),
        Some(
            "1:oauth2 token request failed: the token endpoint answered HTTP 500: temporarily_unavailable (try later):retry | \
             2:oauth2 token request failed: the token endpoint answered HTTP 500: temporarily_unavailable (try later):retry | \
             3:204:delivered"
        )
    );
    assert_eq!(tokens.count(), 3);
    assert_eq!(bearers(&rx), ["Bearer tok-1"]);
}

#[test]
fn new_credentials_drop_the_cached_token() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let first = token_endpoint(3600, 0);
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    // The second authorization server issues tokens the receiver also takes.
    let second = Receiver::with(move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"access_token":"tok-second","token_type":"bearer"}"#.into(),
        }
    });
    let rx = receiver(Arc::default());
    subscribe_behind(&mut db, &first, &rx, "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    let changed: bool = db
        .query_one(
            &format!("SELECT webhook.set_auth('o', '{}')", auth(&second)),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(changed);
    exec(&mut db, "INSERT INTO t VALUES (2)");
    rx.wait_for_answers(2, WAIT);
    assert_eq!(bearers(&rx), ["Bearer tok-1", "Bearer tok-second"]);
    assert_eq!((first.count(), issued.load(Ordering::SeqCst)), (1, 1));
    // Removing the credentials sends no Authorization header: this receiver refuses that.
    exec(&mut db, "SELECT webhook.set_auth('o', NULL)");
    exec(&mut db, "INSERT INTO t VALUES (3)");
    wait_until(WAIT, "a request without a token", || rx.count() == 3);
    assert_eq!(rx.requests()[2].header("authorization"), None);
}

#[test]
fn ping_sends_a_token_too() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 0);
    let rx = receiver(Arc::default());
    subscribe_behind(&mut db, &tokens, &rx, "");
    assert_eq!(
        text(
            &mut db,
            "SELECT delivered || ' ' || status_code FROM webhook.ping('o')"
        )
        .as_deref(),
        Some("true 204")
    );
    assert_eq!(bearers(&rx), ["Bearer tok-1"]);
    assert_eq!(tokens.count(), 1);
}

/// (subscriptions, their auth values, queued events): what a refused call must leave as it was.
fn state(db: &mut Client) -> String {
    text(
        db,
        "SELECT count(*) || ' ' || coalesce(string_agg(coalesce(auth::text, '-'), ',' ORDER BY id), '')
           || ' ' || (SELECT count(*) FROM webhook.events) FROM webhook._subscriptions",
    )
    .unwrap_or_default()
}

#[test]
fn bad_auth_objects_are_refused_and_change_nothing() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 0);
    let rx = receiver(Arc::default());
    subscribe_behind(&mut db, &tokens, &rx, "");
    exec(&mut db, "INSERT INTO t VALUES (1)");
    rx.wait_for_answers(1, WAIT);
    let before = state(&mut db);
    let good = auth(&tokens);
    let url = rx.url("/hook");
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace(r#""scope""#, r#""audience""#),
            "auth has an unknown field \"audience\": the fields are type, token_url, client_id, client_secret, scope",
        ),
        (
            good.replace(r#""client_id": "pg webhook", "#, ""),
            "auth.client_id is missing: it is required for oauth2",
        ),
        (
            good.replace(r#""s3cr:t""#, "42"),
            "auth.client_secret must be a string, not a number",
        ),
        (
            good.replace(r#""oauth2""#, r#""basic""#),
            "auth.type \"basic\" is not supported: give \"oauth2\" (OAuth 2.0 client credentials)",
        ),
        (
            good.replace("http://127.0.0.1", "ftp://127.0.0.1"),
            "auth.token_url: url scheme 'ftp' is not supported: use https:// (or http://)",
        ),
        (
            good.replace("127.0.0.1", "169.254.169.254"),
            "auth.token_url is not allowed: destination refused: 169.254.169.254 resolves to 169.254.169.254 (link-local address); add it to pg_webhook.allowed_destinations to allow it",
        ),
        (
            "[1, 2]".into(),
            "auth must be a JSON object such as {\"type\": \"oauth2\", \"token_url\": \"https://auth.example.com/token\", \"client_id\": \"…\", \"client_secret\": \"…\"}, not an array",
        ),
    ];
    for (bad, expected) in &cases {
        let e = error_of(
            &mut db,
            &format!("SELECT webhook.subscribe('n', 't', '{url}', auth => '{bad}')"),
        );
        assert_eq!(&e, expected, "subscribe with {bad}");
        let e = error_of(&mut db, &format!("SELECT webhook.set_auth('o', '{bad}')"));
        assert_eq!(&e, expected, "set_auth with {bad}");
        assert_eq!(state(&mut db), before, "{bad} changed nothing");
    }
    let e = error_of(
        &mut db,
        &format!(
            r#"SELECT webhook.subscribe('n', 't', '{url}', headers => '{{"Authorization": "Bearer x"}}', auth => '{good}')"#
        ),
    );
    assert_eq!(
        e,
        "headers set Authorization, which auth => oauth2 sends itself (Bearer token): remove one of them"
    );
    assert_eq!(state(&mut db), before);
}

#[test]
fn the_client_secret_is_shown_to_the_owner_only() {
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg);
    let tokens = token_endpoint(3600, 0);
    exec(
        &mut db,
        "CREATE ROLE reader LOGIN; GRANT webhook_admin TO reader; GRANT SELECT ON t TO reader",
    );
    subscribe(
        &mut db,
        "o",
        "t",
        "http://127.0.0.1:9/hook",
        &format!(", auth => '{}'", auth(&tokens)),
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT auth->>'client_secret' FROM webhook.subscriptions"
        )
        .as_deref(),
        Some("s3cr:t")
    );
    let mut reader = pg.connect_as("postgres", "reader");
    assert_eq!(
        text(&mut reader, "SELECT auth::text FROM webhook.subscriptions").as_deref(),
        Some(r#"{"type": "oauth2"}"#)
    );
}
