//! The HTTP client against real sockets on 127.0.0.1: what it sends, and how it ends up when the
//! receiver misbehaves.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::http::{Endpoint, Message, Sender, SenderSettings};
use pg_webhook_core::retry::AttemptKind;
use pg_webhook_core::signing::{header_matches, Secret};
use pg_webhook_core::{Bytes, HeaderMap, Url};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod loopback;
use loopback::{read_request, serve, serve_counting};

fn loopback_sender() -> Sender {
    Sender::new(&SenderSettings {
        policy: AddressPolicy::parse("127.0.0.1").unwrap(),
        response_excerpt_bytes: 64,
        ..SenderSettings::default()
    })
    .unwrap()
}

fn endpoint(url: &Url, secret: &Secret, timeout_ms: u64) -> Endpoint {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "acme".parse().unwrap());
    Endpoint {
        url: url.clone(),
        secrets: vec![secret.clone()],
        headers,
        timeout: Duration::from_millis(timeout_ms),
        keep_response_headers: false,
        auth: Default::default(),
    }
}

fn message() -> Message {
    Message {
        id: "msg_test_1".into(),
        body: Bytes::from_static(br#"{"type":"INSERT","record":{"id": 1}}"#),
        content_type: "application/json",
    }
}

fn reply(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn success_is_signed_verifiably_and_reuses_the_connection() {
    let (url, seen, connections) = serve_counting(|_, _| reply("204 No Content", "", "")).await;
    let secret = Secret::generate().unwrap();
    let sender = loopback_sender();
    for _ in 0..3 {
        let a = sender
            .send(&endpoint(&url, &secret, 5000), &message())
            .await;
        assert_eq!(a.status, Some(204), "{a:?}");
        assert_eq!(a.error, None);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "keep-alive reuses one connection"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let req = &seen[0];
    assert!(req.head.starts_with("POST /hook HTTP/1.1"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-tenant"), Some("acme"));
    assert_eq!(req.header("webhook-id"), Some("msg_test_1"));
    assert!(req.header("user-agent").unwrap().starts_with("pg_webhook/"));
    let ts: i64 = req.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 5);
    assert_eq!(req.body, message().body.to_vec());
    assert!(header_matches(
        &secret,
        "msg_test_1",
        ts,
        &req.body,
        req.header("webhook-signature").unwrap()
    ));
}

#[tokio::test]
async fn a_subscriptions_own_user_agent_replaces_the_senders() {
    let (url, seen) = serve(|_, _| reply("204 No Content", "", "")).await;
    let mut own = endpoint(&url, &Secret::generate().unwrap(), 5000);
    own.headers
        .insert("user-agent", "acme-sync/2".parse().unwrap());
    let a = loopback_sender().send(&own, &message()).await;
    assert_eq!(a.status, Some(204), "{a:?}");
    let seen = seen.lock().unwrap();
    let head = seen[0].head.to_ascii_lowercase();
    let agents: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("user-agent:"))
        .collect();
    assert_eq!(agents, ["user-agent: acme-sync/2"], "{head}");
}

#[tokio::test]
async fn failure_status_keeps_a_bounded_excerpt() {
    let long = "x".repeat(10_000);
    let (url, _) = serve(move |_, _| reply("500 Internal Server Error", "", &long)).await;
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 5000),
            &message(),
        )
        .await;
    assert_eq!(a.status, Some(500));
    assert_eq!(a.response_excerpt.as_deref().map(str::len), Some(64));
    assert!(matches!(a.kind, AttemptKind::Status { code: 500, .. }));
}

#[tokio::test]
async fn response_headers_are_kept_only_when_asked_and_bounded() {
    let big = "v".repeat(1000);
    let many: String = (0..30).map(|i| format!("x-h{i}: {big}\r\n")).collect();
    let extra = format!("x-order-id: 42\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n{many}");
    let (url, _) = serve(move |_, _| reply("200 OK", &extra, "ok")).await;
    let secret = Secret::generate().unwrap();
    let mut wanted = endpoint(&url, &secret, 5000);
    let sender = loopback_sender();
    let plain = sender.send(&wanted, &message()).await;
    assert_eq!(plain.response_headers, None);
    wanted.keep_response_headers = true;
    let a = sender.send(&wanted, &message()).await;
    let text = a
        .response_headers
        .unwrap_or_else(|| panic!("headers kept: {:?}", a.error));
    assert!(text.len() <= 8 * 1024, "{} bytes", text.len());
    let headers: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(headers["x-order-id"], "42");
    assert_eq!(headers["set-cookie"], "a=1, b=2");
}

#[tokio::test]
async fn retry_after_is_read() {
    let (url, _) = serve(|_, _| reply("429 Too Many Requests", "retry-after: 7\r\n", "")).await;
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 5000),
            &message(),
        )
        .await;
    assert_eq!(
        a.kind,
        AttemptKind::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(7))
        }
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (url, seen) =
        serve(|_, _| reply("302 Found", "location: http://127.0.0.1:1/x\r\n", "")).await;
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 5000),
            &message(),
        )
        .await;
    assert_eq!(a.status, Some(302));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hanging_receiver_times_out() {
    let (url, _) = serve(|_, _| {
        std::thread::sleep(Duration::from_millis(10));
        Vec::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"[..])
    })
    .await;
    let t = Instant::now();
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 300),
            &message(),
        )
        .await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The status arrived but the body never finished: the status decides, the error is noted.
    assert_eq!(a.status, Some(200));
    assert!(a.error.unwrap().contains("reading response body"));

    let (silent, _) = serve(|_, _| {
        std::thread::sleep(Duration::from_millis(600));
        Vec::new()
    })
    .await;
    let a = loopback_sender()
        .send(
            &endpoint(&silent, &Secret::generate().unwrap(), 200),
            &message(),
        )
        .await;
    assert_eq!(a.status, None);
    assert_eq!(a.kind, AttemptKind::TransportError);
    assert!(a.error.unwrap().contains("timed out"));
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_excerpt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 1000, "y".repeat(1000));
        while s.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 5000),
            &message(),
        )
        .await;
    assert_eq!(a.status, Some(200));
    assert_eq!(a.response_excerpt.unwrap().len(), 64);
    assert!(a.duration < Duration::from_secs(2));
}

#[tokio::test]
async fn refused_connections_and_resets_are_transport_errors() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    assert_eq!(a.kind, AttemptKind::TransportError);
    assert!(a.error.unwrap().to_lowercase().contains("refused"));

    let (reset, _) = serve(|_, _| Vec::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..])).await;
    let a = loopback_sender()
        .send(
            &endpoint(&reset, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    assert_eq!(a.kind, AttemptKind::TransportError, "{a:?}");
}

#[tokio::test]
async fn private_destinations_are_refused_without_connecting() {
    let (url, seen) = serve(|_, _| reply("204 No Content", "", "")).await;
    let strict = Sender::new(&SenderSettings::default()).unwrap();
    let a = strict
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    assert_eq!(a.kind, AttemptKind::Refused);
    assert!(a.error.unwrap().contains("127.0.0.1 (loopback address)"));

    // A name that resolves to loopback is refused after resolution, not before.
    let by_name = Url::parse(&format!("http://localhost:{}/", url.port().unwrap())).unwrap();
    let a = strict
        .send(
            &endpoint(&by_name, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    assert_eq!(a.kind, AttemptKind::Refused, "{a:?}");
    assert!(a.error.unwrap().contains("destination refused"));
    assert!(seen.lock().unwrap().is_empty());

    let by_host_rule = Sender::new(&SenderSettings {
        policy: AddressPolicy::parse("localhost").unwrap(),
        ..SenderSettings::default()
    })
    .unwrap();
    let a = by_host_rule
        .send(
            &endpoint(&by_name, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    assert!(
        a.status == Some(204) || a.kind == AttemptKind::TransportError,
        "{a:?}"
    );
}

#[tokio::test]
async fn unresolvable_names_are_transport_errors() {
    let url = Url::parse("http://does-not-exist.invalid/").unwrap();
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 3000),
            &message(),
        )
        .await;
    assert_eq!(a.kind, AttemptKind::TransportError);
    assert!(a.error.unwrap().contains("does-not-exist.invalid"));
}

#[test]
fn a_bad_ca_bundle_is_refused() {
    let err = Sender::new(&SenderSettings {
        extra_ca_pem: Some(b"not a certificate".to_vec()),
        ..SenderSettings::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("CA bundle"));
}

#[tokio::test]
async fn transport_errors_do_not_show_the_url() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!(
        "http://{}/hooks/secret-path?token=abc123",
        closed.local_addr().unwrap()
    ))
    .unwrap();
    drop(closed);
    let a = loopback_sender()
        .send(
            &endpoint(&url, &Secret::generate().unwrap(), 2000),
            &message(),
        )
        .await;
    let error = a.error.unwrap();
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(!error.contains("abc123"), "{error}");
    assert!(!error.contains("secret-path"), "{error}");
}

#[tokio::test]
async fn nul_bytes_from_a_receiver_never_reach_postgres() {
    // A header value cannot hold a NUL (invalid HTTP); the body is what a receiver controls.
    let (url, _) =
        serve(|_, _| reply("500 Internal Server Error", "x-evil: a\r\n", "bad\0body")).await;
    let mut wanted = endpoint(&url, &Secret::generate().unwrap(), 5000);
    wanted.keep_response_headers = true;
    let a = loopback_sender().send(&wanted, &message()).await;
    assert_eq!(a.status, Some(500));
    let excerpt = a.response_excerpt.unwrap();
    assert!(!excerpt.contains('\0'), "{excerpt:?}");
    assert_eq!(excerpt, "bad\u{fffd}body");
    assert!(!a.response_headers.unwrap().contains("\\u0000"));
}

#[test]
fn storable_text_replaces_only_nul() {
    use pg_webhook_core::http::storable_text;
    assert_eq!(storable_text("a\0b\0".into()), "a\u{fffd}b\u{fffd}");
    assert_eq!(storable_text("plain ✓".into()), "plain ✓");
}
