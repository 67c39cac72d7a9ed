//! Interim (1xx) answers: a few before the answer are read past; a receiver that streams them
//! is left long before the subscription's timeout, its connection closed, instead of keeping
//! the HTTP thread that every delivery shares parsing them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::auth::OAuth2;
use pg_webhook_core::http::{Credentials, Endpoint, Message, Sender, SenderSettings};
use pg_webhook_core::retry::AttemptKind;
use pg_webhook_core::signing::Secret;
use pg_webhook_core::{Bytes, HeaderMap, Url};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod loopback;
use loopback::read_request;

const PROCESSING: &[u8] = b"HTTP/1.1 102 Processing\r\n\r\n";

fn sender() -> Sender {
    Sender::new(&SenderSettings {
        policy: AddressPolicy::parse("127.0.0.1").expect("a loopback policy"),
        ..SenderSettings::default()
    })
    .expect("a sender")
}

/// A subscription's endpoint with a long timeout: an attempt that ends early ended for
/// another reason.
fn endpoint(url: &Url) -> Endpoint {
    Endpoint {
        url: url.clone(),
        secrets: vec![Secret::generate().expect("a secret")],
        headers: HeaderMap::new(),
        timeout: Duration::from_secs(60),
        keep_response_headers: false,
        auth: Default::default(),
    }
}

fn message() -> Message {
    Message {
        id: "msg_interim".into(),
        body: Bytes::from_static(br#"{"type":"INSERT"}"#),
        content_type: "application/json",
    }
}

/// A receiver that reads one request and writes `interim` answers (`None`: until the
/// connection fails), then `last`. The flag is set once a write has failed.
async fn receiver(interim: Option<usize>, last: &'static [u8]) -> (Url, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let url = Url::parse(&format!(
        "http://{}/",
        listener.local_addr().expect("its address")
    ))
    .expect("a URL");
    let closed = Arc::new(AtomicBool::new(false));
    let seen_closed = Arc::clone(&closed);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("a connection");
        read_request(&mut stream).await.expect("a request");
        let mut sent = 0;
        while interim.is_none_or(|n| sent < n) {
            if stream.write_all(PROCESSING).await.is_err() {
                seen_closed.store(true, Ordering::SeqCst);
                return;
            }
            sent += 1;
        }
        if stream.write_all(last).await.is_err() {
            seen_closed.store(true, Ordering::SeqCst);
        }
    });
    (url, closed)
}

#[tokio::test]
async fn a_few_interim_answers_before_the_answer_are_read_past() {
    let (url, _) = receiver(Some(5), b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let attempt = sender().send(&endpoint(&url), &message()).await;
    assert_eq!(attempt.status, Some(200), "{:?}", attempt.error);
    assert_eq!(attempt.error, None);
}

/// The attempt failed with `error` well before the endpoint's 60 s timeout, and the stream's
/// connection is closed, not left to a task that goes on reading it.
async fn given_up(attempt: pg_webhook_core::http::Attempt, error: &str, closed: &AtomicBool) {
    assert_eq!(attempt.status, None);
    assert_eq!(attempt.kind, AttemptKind::TransportError);
    assert_eq!(attempt.error.unwrap_or_default(), error);
    assert!(
        attempt.duration < Duration::from_secs(30),
        "given up only after {:?}",
        attempt.duration
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !closed.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream's server could still write after the attempt ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stream_of_interim_answers_ends_the_attempt_and_its_connection() {
    let (url, closed) = receiver(None, b"").await;
    let attempt = sender().send(&endpoint(&url), &message()).await;
    let error = "the receiver sent more than 64 interim (1xx) answers before its answer: \
                 the request was given up";
    given_up(attempt, error, &closed).await;
}

#[tokio::test]
async fn a_token_endpoint_streaming_interim_answers_is_given_up_too() {
    // Token requests went through reqwest, which reads past 1xx answers until the timeout.
    let (token_url, closed) = receiver(None, b"").await;
    let (url, _) = receiver(Some(0), b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let mut endpoint = endpoint(&url);
    endpoint.auth = Credentials {
        subscription: 1,
        identity: None,
        oauth2: Some(OAuth2 {
            token_url,
            client_id: "id".into(),
            client_secret: "secret".into(),
            scope: None,
        }),
    };
    let attempt = sender().send(&endpoint, &message()).await;
    let error = "oauth2 token request failed: the token endpoint sent more than 64 interim \
                 (1xx) answers before its answer: the request was given up";
    given_up(attempt, error, &closed).await;
}
