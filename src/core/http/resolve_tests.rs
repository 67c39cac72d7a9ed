//! Lookups shared by name: a slow name holds one thread however often it is asked for, and
//! does not hold up other names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::Lookups;

/// Waits (on the lookup's thread) until `release` is set, counting the calls in `calls`.
fn stuck_until(release: &AtomicBool, calls: &AtomicUsize) -> std::io::Result<Vec<SocketAddr>> {
    calls.fetch_add(1, Ordering::SeqCst);
    while !release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(vec![SocketAddr::from(([192, 0, 2, 7], 0))])
}

/// Sets its flag when dropped, so a failed assertion does not leave lookups stuck (the runtime
/// waits for its blocking threads when it shuts down).
struct Release(&'static AtomicBool);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Waits (10 s at most) until `done` holds, panicking with `what` if it does not: a lookup's
/// thread counts its call when it first runs, and leaves `running` when it ends, each on a
/// loaded machine well after the request that started it.
async fn until(what: &str, done: impl Fn() -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    reached
        .await
        .unwrap_or_else(|_| panic!("{what} within 10 s"));
}

static SLOW: Lookups = Lookups::new(Duration::from_secs(60), 1);
static SLOW_RELEASE: AtomicBool = AtomicBool::new(false);
static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

fn slow(_: &str) -> std::io::Result<Vec<SocketAddr>> {
    stuck_until(&SLOW_RELEASE, &SLOW_CALLS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_time_out_on_a_slow_name_start_one_lookup_between_them() {
    let _release = Release(&SLOW_RELEASE);
    for _ in 0..50 {
        let waited =
            tokio::time::timeout(Duration::from_millis(2), SLOW.lookup("slow.example", slow)).await;
        assert!(waited.is_err(), "the stuck lookup answered: {waited:?}");
    }
    until("the lookup to begin", || {
        SLOW_CALLS.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(SLOW.running(), 1);

    // A request that waits gets the answer of the lookup it joined. It is polled once before
    // the lookup is released, so it has joined by then (spawned, it could first run after the
    // lookup ended, and start one of its own).
    let joined = SLOW.lookup("slow.example", slow);
    tokio::pin!(joined);
    let first = tokio::time::timeout(Duration::from_millis(2), &mut joined).await;
    assert!(first.is_err(), "the stuck lookup answered: {first:?}");
    SLOW_RELEASE.store(true, Ordering::SeqCst);
    let found = tokio::time::timeout(Duration::from_secs(10), joined)
        .await
        .expect("the joined lookup answered within 10 s")
        .expect("the lookup found addresses");
    assert_eq!(&found[..], &[SocketAddr::from(([192, 0, 2, 7], 0))]);
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);

    // No answer is kept: the next request looks the name up again.
    tokio::time::timeout(Duration::from_secs(10), SLOW.lookup("slow.example", slow))
        .await
        .expect("the second lookup answered within 10 s")
        .expect("the second lookup found addresses");
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(SLOW.running(), 0);
}

static MIXED: Lookups = Lookups::new(Duration::from_secs(60), 1);
static MIXED_RELEASE: AtomicBool = AtomicBool::new(false);
static MIXED_CALLS: AtomicUsize = AtomicUsize::new(0);

fn slow_or_quick(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    match host {
        "slow.example" => stuck_until(&MIXED_RELEASE, &MIXED_CALLS),
        _ => Ok(vec![SocketAddr::from(([198, 51, 100, 1], 0))]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_name_is_looked_up_while_a_slow_one_has_not_answered() {
    let _release = Release(&MIXED_RELEASE);
    for _ in 0..20 {
        let waited = tokio::time::timeout(
            Duration::from_millis(2),
            MIXED.lookup("slow.example", slow_or_quick),
        )
        .await;
        assert!(waited.is_err(), "the stuck lookup answered: {waited:?}");
    }
    let quick = tokio::time::timeout(
        Duration::from_secs(10),
        MIXED.lookup("quick.example", slow_or_quick),
    )
    .await;
    until("the lookup to begin", || {
        MIXED_CALLS.load(Ordering::SeqCst) >= 1
    })
    .await;
    MIXED_RELEASE.store(true, Ordering::SeqCst);
    let found = quick
        .expect("quick.example answered within 10 s while slow.example was stuck")
        .expect("quick.example has an address");
    assert_eq!(&found[..], &[SocketAddr::from(([198, 51, 100, 1], 0))]);
    assert_eq!(MIXED_CALLS.load(Ordering::SeqCst), 1);
}

static FAILING: Lookups = Lookups::new(Duration::from_secs(60), 1);
static FAILING_CALLS: AtomicUsize = AtomicUsize::new(0);

fn fails_then_panics(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    match FAILING_CALLS.fetch_add(1, Ordering::SeqCst) {
        0 => Err(std::io::Error::other("server failure")),
        _ => panic!("the resolver of {host} broke"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_broken_lookup_answers_with_an_error_and_frees_the_name() {
    let failed = FAILING.lookup("broken.example", fails_then_panics).await;
    assert_eq!(
        failed.expect_err("a failed lookup is an error"),
        "could not resolve broken.example: server failure"
    );
    let broken = tokio::time::timeout(
        Duration::from_secs(10),
        FAILING.lookup("broken.example", fails_then_panics),
    )
    .await
    .expect("a lookup whose thread panicked answered within 10 s");
    assert_eq!(
        broken.expect_err("a panicked lookup is an error"),
        "could not resolve broken.example: the lookup ended without an answer"
    );
    assert_eq!(FAILING.running(), 0);
    assert_eq!(FAILING_CALLS.load(Ordering::SeqCst), 2);
}

static DOWN: Lookups = Lookups::new(Duration::from_secs(60), 1);

fn quick(_: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(vec![SocketAddr::from(([198, 51, 100, 2], 0))])
}

#[test]
fn a_lookup_started_while_the_runtime_shuts_down_fails_instead_of_hanging() {
    // A runtime shutting down drops a blocking task at once, on the thread that spawns it:
    // the lookup's guard then took the lock its spawner still held, and the worker's HTTP
    // thread hung (and with it the worker's exit).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    let (tell, told) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let mut lookup = std::pin::pin!(DOWN.lookup("down.example", quick));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = std::future::Future::poll(lookup.as_mut(), &mut context);
        tell.send(format!("{polled:?}"))
            .expect("the test waits for it");
    });
    let polled = told
        .recv_timeout(Duration::from_secs(10))
        .expect("the lookup's first poll returned within 10 s");
    assert_eq!(
        polled,
        r#"Ready(Err("could not resolve down.example: the lookup ended without an answer"))"#
    );
    assert_eq!(DOWN.running(), 0);
}

static CAPPED: Lookups = Lookups::new(Duration::from_millis(50), 2);
static CAPPED_HOLD: AtomicBool = AtomicBool::new(false);
static CAPPED_RELEASE: AtomicBool = AtomicBool::new(false);
static CAPPED_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Names starting "slow" answer after 100 ms, or once released while held; others at once.
fn slow_names(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    if host.starts_with("slow") {
        CAPPED_CALLS.fetch_add(1, Ordering::SeqCst);
        if CAPPED_HOLD.load(Ordering::SeqCst) {
            while !CAPPED_RELEASE.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(vec![SocketAddr::from(([198, 51, 100, 3], 0))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_whose_lookups_were_slow_share_a_few_threads_and_others_go_on() {
    // One subscriber's many names that answer slowly (a wildcard zone: one name per
    // subscription) each held a thread of the pool, and between them could take it all.
    let _release = Release(&CAPPED_RELEASE);
    for name in ["slow1", "slow2", "slow3"] {
        CAPPED
            .lookup(name, slow_names)
            .await
            .expect("a slow name answers");
    }
    CAPPED_HOLD.store(true, Ordering::SeqCst);
    for name in ["slow1", "slow2"] {
        let waited =
            tokio::time::timeout(Duration::from_millis(2), CAPPED.lookup(name, slow_names));
        assert!(waited.await.is_err(), "{name} is held");
    }
    assert_eq!(
        CAPPED.lookup("slow3", slow_names).await.expect_err("over the cap"),
        "could not resolve slow3: its last lookup took over 50 ms, and 2 lookups of such names are running already"
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        CAPPED.lookup("answers.example", slow_names),
    )
    .await
    .expect("a name that answers is looked up meanwhile")
    .expect("and has an address");
    // (slow3, refused, never called the lookup.)
    until("5 lookups to begin", || {
        CAPPED_CALLS.load(Ordering::SeqCst) >= 5
    })
    .await;
    assert_eq!(CAPPED_CALLS.load(Ordering::SeqCst), 5);
    CAPPED_RELEASE.store(true, Ordering::SeqCst);
    until("the held lookups to answer once released", || {
        CAPPED.running() == 0
    })
    .await;
    CAPPED
        .lookup("slow3", slow_names)
        .await
        .expect("a slow name is looked up again once the others have answered");
}
