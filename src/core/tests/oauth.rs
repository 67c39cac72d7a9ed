//! OAuth 2.0 client credentials on the HTTP side, against real sockets on 127.0.0.1: what a
//! token endpoint's answer gives, and how many token requests concurrent deliveries make.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::auth::OAuth2;
use pg_webhook_core::http::{
    interpret_token_answer, Attempt, Credentials, Endpoint, Message, Sender, SenderSettings,
};
use pg_webhook_core::retry::AttemptKind;
use pg_webhook_core::signing::Secret;
use pg_webhook_core::{Bytes, HeaderMap, Url};

mod loopback;
use loopback::serve;

fn answer(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn token_text(status: u16, body: &str) -> Result<(String, Duration), String> {
    interpret_token_answer(status, body.as_bytes())
        .map(|(value, lifetime)| (value.to_str().unwrap().to_string(), lifetime))
        .map_err(|e| e.text)
}

#[test]
fn a_token_answer_gives_the_bearer_value_and_its_lifetime() {
    assert_eq!(
        token_text(
            200,
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":120}"#
        ),
        Ok(("Bearer abc".into(), Duration::from_secs(120)))
    );
    // token_type is case-insensitive (RFC 6749 5.1); expires_in as a string is tolerated.
    assert_eq!(
        token_text(
            200,
            r#"{"access_token":"abc","token_type":"bearer","expires_in":"60"}"#
        ),
        Ok(("Bearer abc".into(), Duration::from_secs(60)))
    );
    // Without expires_in, an hour; never more than a day.
    assert_eq!(
        token_text(200, r#"{"access_token":"abc"}"#).map(|t| t.1),
        Ok(Duration::from_secs(3600))
    );
    assert_eq!(
        token_text(200, r#"{"access_token":"abc","expires_in":1e12}"#).map(|t| t.1),
        Ok(Duration::from_secs(86_400))
    );
}

#[test]
fn a_token_answer_that_gives_no_usable_token_is_a_clear_error() {
    let cases = [
        (400, r#"{"error":"invalid_client","error_description":"bad secret"}"#,
         "oauth2 token request failed: the token endpoint answered HTTP 400: invalid_client (bad secret)"),
        (503, "<html>down</html>",
         "oauth2 token request failed: the token endpoint answered HTTP 503"),
        (200, "not json",
         "oauth2 token request failed: the token endpoint's answer is not a JSON object"),
        (200, r#"{"access_token":5}"#,
         "oauth2 token request failed: the token endpoint's answer has no access_token"),
        (200, r#"{"access_token":"abc","token_type":"mac"}"#,
         "oauth2 token request failed: the token endpoint gave a token of type \"mac\": only Bearer tokens are supported"),
        (200, r#"{"access_token":"abc","expires_in":-5}"#,
         "oauth2 token request failed: the token endpoint's expires_in is not a number of seconds"),
        (200, "{\"access_token\":\"a\\nb\"}",
         "oauth2 token request failed: the access_token has characters that cannot be sent in a header"),
    ];
    for (status, body, expected) in cases {
        assert_eq!(
            token_text(status, body),
            Err(expected.to_string()),
            "{body}"
        );
    }
}

fn oauth2(token_url: &Url) -> OAuth2 {
    OAuth2 {
        token_url: token_url.clone(),
        client_id: "id".into(),
        client_secret: "secret".into(),
        scope: None,
    }
}

fn endpoint(url: &Url, oauth: OAuth2) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        url: url.clone(),
        secrets: vec![Secret::generate().unwrap()],
        headers: HeaderMap::new(),
        timeout: Duration::from_secs(5),
        keep_response_headers: false,
        auth: Credentials {
            subscription: 7,
            identity: None,
            oauth2: Some(oauth),
        },
    })
}

fn sender() -> Sender {
    Sender::new(&SenderSettings {
        policy: AddressPolicy::parse("127.0.0.1").unwrap(),
        ..SenderSettings::default()
    })
    .unwrap()
}

/// Sends `n` messages at once through `sender` and returns their attempts.
async fn send_many(sender: &Sender, endpoint: &Arc<Endpoint>, n: usize) -> Vec<Attempt> {
    send_many_counted(sender, endpoint, n, &Arc::new(AtomicUsize::new(0))).await
}

/// `send_many`, each task counting in `started` as it begins its send.
async fn send_many_counted(
    sender: &Sender,
    endpoint: &Arc<Endpoint>,
    n: usize,
    started: &Arc<AtomicUsize>,
) -> Vec<Attempt> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (sender, endpoint, started) = (sender.clone(), endpoint.clone(), started.clone());
        tasks.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            let message = Message {
                id: format!("msg_t_{i}"),
                body: Bytes::from_static(b"{}"),
                content_type: "application/json",
            };
            sender.send(&endpoint, &message).await
        });
    }
    tasks.join_all().await
}

/// A token endpoint issuing tok-1, tok-2, …, each answer after `delay`.
async fn token_endpoint(delay: Duration) -> (Url, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let (url, _) = serve(move |_, _| {
        std::thread::sleep(delay);
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        answer(
            200,
            &format!(r#"{{"access_token":"tok-{n}","expires_in":3600}}"#),
        )
    })
    .await;
    (url, issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_wait_for_one_token_request() {
    let (token_url, issued) = token_endpoint(Duration::from_millis(100)).await;
    let (url, seen) = serve(|_, _| answer(204, "")).await;
    let attempts = send_many(&sender(), &endpoint(&url, oauth2(&token_url)), 20).await;
    assert!(
        attempts.iter().all(|a| a.status == Some(204)),
        "{attempts:?}"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    let seen = seen.lock().unwrap();
    assert!(seen
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer tok-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_401s_to_one_token_get_one_new_token() {
    let (token_url, issued) = token_endpoint(Duration::from_millis(50)).await;
    let (url, _) = serve(|req, _| match req.header("authorization") {
        Some("Bearer tok-1") => answer(401, ""),
        _ => answer(204, ""),
    })
    .await;
    // All twenty wait for tok-1, all meet the 401 with it, and share the one new token.
    let attempts = send_many(&sender(), &endpoint(&url, oauth2(&token_url)), 20).await;
    assert!(
        attempts.iter().all(|a| a.status == Some(204)),
        "{attempts:?}"
    );
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "tok-1, then tok-2 for all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_token_request_fails_those_waiting_for_it_and_is_retried_later() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // The token endpoint answers once all ten have asked for the token (a task first run after
    // the failure would ask again, rightly, and the count below would be 2), and 100 ms later.
    let started = Arc::new(AtomicUsize::new(0));
    let all_asked = started.clone();
    let (token_url, _) = serve(move |_, _| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while all_asked.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        counter.fetch_add(1, Ordering::SeqCst);
        answer(500, r#"{"error":"server_error"}"#)
    })
    .await;
    let (url, seen) = serve(|_, _| answer(204, "")).await;
    let sender = sender();
    let endpoint = endpoint(&url, oauth2(&token_url));
    let attempts = send_many_counted(&sender, &endpoint, 10, &started).await;
    for a in &attempts {
        assert_eq!(a.kind, AttemptKind::TransportError);
        assert_eq!(a.status, None);
        assert_eq!(
            a.error.as_deref(),
            Some("oauth2 token request failed: the token endpoint answered HTTP 500: server_error")
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one request for all ten");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing sent without a token"
    );
    // A later attempt asks again.
    send_many(&sender, &endpoint, 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_url_the_policy_refuses_is_a_refused_attempt() {
    let (url, seen) = serve(|_, _| answer(204, "")).await;
    let refused = Url::parse("http://10.1.2.3/token").unwrap();
    let attempts = send_many(&sender(), &endpoint(&url, oauth2(&refused)), 1).await;
    assert_eq!(attempts[0].kind, AttemptKind::Refused);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("oauth2 token request failed: destination refused: 10.1.2.3 resolves to 10.1.2.3 (private address); add it to pg_webhook.allowed_destinations to allow it")
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tokens_of_subscriptions_no_longer_loaded_are_forgotten() {
    // The worker keeps a token per subscription; one unsubscribed (and no longer loaded) kept
    // its token, and its client, for as long as the worker ran.
    let (token_url, issued) = token_endpoint(Duration::ZERO).await;
    let (url, _) = serve(|_, _| answer(204, "")).await;
    let (sender, endpoint) = (sender(), endpoint(&url, oauth2(&token_url)));
    send_many(&sender, &endpoint, 1).await;
    assert_eq!(sender.credentials_kept(), (0, 1));
    sender.keep_credentials_of(&[7].into_iter().collect());
    assert_eq!(
        sender.credentials_kept(),
        (0, 1),
        "a loaded one's token stays"
    );
    sender.keep_credentials_of(&[8].into_iter().collect());
    assert_eq!(sender.credentials_kept(), (0, 0));
    let again = send_many(&sender, &endpoint, 1).await;
    assert_eq!(again[0].status, Some(204), "{again:?}");
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "a new token for it, once loaded again"
    );
}
