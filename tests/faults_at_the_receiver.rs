//! Fault injection on the receiver's side (harness and checks: tests/support/faults.rs): a
//! receiver that is down, answers errors, Retry-After, redirects, slowly or not at all, resets
//! the connection or sends a large body; an endpoint that never resolves beside a healthy one;
//! a certificate from an unknown CA. One test per fault, so one failure cannot hide the rest of
//! the table.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::cluster::{free_port, wait_until, Cluster};
use support::faults::{
    first_attempts, held, ids, ok, run_recovering, settle, setup, tally, Crash, Load, FAST_RETRY,
    SETTLE,
};
use support::receiver::{Receiver, Reply, Request};
use support::tls::{HttpsReceiver, Pki};
use support::{alter_system, count, subscribe};

#[test]
fn receiver_down_then_back() {
    // Nothing listens on the port until it comes back.
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let port = free_port();
    let (sid, _) = subscribe(
        &mut db,
        "load",
        "load",
        &format!("http://127.0.0.1:{port}/load"),
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1500));
    let rx = Receiver::on_port(port, ok);
    thread::sleep(Duration::from_millis(500));
    let acked = load.finish();
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(acked.is_subset(&committed));
    let held = held(&mut db, sid);
    let refused = count(
        &mut db,
        "SELECT count(*) FROM webhook.attempts WHERE error ILIKE '%refused%'",
    );
    assert!(refused > 0, "connection refused attempts are recorded");
    tally(
        "receiver down (connection refused), then back",
        &committed,
        &rx.accepted(),
        &held,
        true,
        0,
    )
    .report();
}

#[test]
fn receiver_answers_500_twice() {
    run_recovering(
        "receiver answers 500 to the first two attempts of each event",
        &[],
        first_attempts(2, Reply::Status(500)),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_429_with_retry_after() {
    run_recovering(
        "receiver answers 429 with Retry-After: 1 first",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_503_with_an_http_date() {
    run_recovering(
        "receiver answers 503 with Retry-After (HTTP date) first",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 503,
                headers: vec![("Retry-After".into(), "Thu, 01 Jan 1970 00:00:00 GMT".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_hangs_past_the_timeout() {
    run_recovering(
        "receiver hangs past the timeout on first attempts",
        &[],
        // The retry's answer must be read within the timeout, or it is tried again and counts
        // as a duplicate: 1 s, not 300 ms, so that ten clusters' load on two cores does not.
        first_attempts(1, Reply::Hang(Duration::from_secs(4))),
        &format!("{FAST_RETRY}, timeout => '1 second'"),
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_resets_mid_response() {
    run_recovering(
        "receiver resets the connection mid-response",
        &[],
        first_attempts(1, Reply::Raw(b"HTTP/1.1 20".to_vec())),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_answers_slowly() {
    run_recovering(
        "receiver answers very slowly (1.5 s)",
        &[],
        |_, _| Reply::Delay(Duration::from_millis(1500), 204),
        ", timeout => '10 seconds'",
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_sends_a_large_body() {
    run_recovering(
        "receiver sends a 3 MB body",
        &[],
        |_, _| Reply::Full {
            status: 200,
            headers: vec![],
            body: "z".repeat(3_000_000),
        },
        "",
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn receiver_redirects() {
    run_recovering(
        "receiver redirects (302) first: not followed, retried",
        &[],
        first_attempts(
            1,
            Reply::Full {
                status: 302,
                headers: vec![("Location".into(), "http://127.0.0.1:1/elsewhere".into())],
                body: String::new(),
            },
        ),
        FAST_RETRY,
        Crash::No,
        |_, _| {},
    );
}

#[test]
fn a_broken_endpoint_beside_a_healthy_one() {
    // An endpoint whose name does not resolve: every event is kept, with the error, and the
    // healthy subscription on the same table gets everything.
    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let rx = Receiver::start();
    let (healthy, _) = subscribe(&mut db, "healthy", "load", &rx.url("/load"), "");
    let (broken, _) = subscribe(
        &mut db,
        "broken",
        "load",
        "http://no-such-host.invalid/hook",
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1200));
    load.finish();
    settle(&mut db, healthy);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    wait_until(SETTLE, "every broken event to have failed once", || {
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM webhook.events WHERE subscription_id = {broken} AND attempts = 0"
            ),
        ) == 0
    });
    let dns_errors = count(
        &mut db,
        &format!(
            "SELECT count(*) FROM webhook.attempts WHERE subscription_id = {broken} AND error LIKE '%no-such-host.invalid%'"
        ),
    );
    assert!(dns_errors > 0, "DNS failures are recorded");
    let broken_held = held(&mut db, broken);
    tally(
        "healthy subscription beside a broken one",
        &committed,
        &rx.accepted(),
        &held(&mut db, healthy),
        true,
        0,
    )
    .report();
    tally(
        "DNS name that does not resolve (events kept, retried)",
        &committed,
        &[],
        &broken_held,
        false,
        0,
    )
    .report();
}

#[test]
/// TLS: a certificate from an unknown CA is refused; configuring the CA makes it pass.
fn tls_unknown_ca_then_ca_bundle() {
    let pki = Pki::new("tls");
    let rx = HttpsReceiver::start(&pki);

    let pg = Cluster::start(&[]);
    let mut db = setup(&pg, "load");
    let (sid, _) = subscribe(
        &mut db,
        "tls",
        "load",
        &format!("https://127.0.0.1:{}/tls", rx.port),
        FAST_RETRY,
    );
    let load = Load::start(pg.port, "load");
    thread::sleep(Duration::from_millis(1000));
    let acked = load.finish();
    thread::sleep(Duration::from_millis(500));
    wait_until(SETTLE, "a certificate error", || {
        count(
            &mut db,
            "SELECT count(*) FROM webhook.attempts WHERE error ILIKE '%certificate%'",
        ) > 0
    });
    assert_eq!(
        rx.received().len(),
        0,
        "nothing reached the untrusted server"
    );
    alter_system(
        &mut db,
        &format!(
            "SET pg_webhook.ca_bundle = '{}'",
            pki.path("ca.pem").display()
        ),
    );
    settle(&mut db, sid);
    let committed = ids(&mut db, "SELECT id FROM load WHERE id > 0");
    assert!(acked.is_subset(&committed));
    let accepted: Vec<Request> = rx
        .deliveries()
        .into_iter()
        .map(|(id, row)| Request {
            path: "/tls".into(),
            headers: vec![("webhook-id".into(), id)],
            body: format!("{{\"record\":{{\"id\":{row}}}}}").into_bytes(),
            at: Instant::now(),
            peer: None,
            connection: 0,
        })
        .collect();
    drop(rx);
    let held = held(&mut db, sid);
    tally(
        "TLS: unknown CA refused, then trusted via pg_webhook.ca_bundle",
        &committed,
        &accepted,
        &held,
        true,
        0,
    )
    .report();
}
