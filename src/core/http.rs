//! The HTTP side of a delivery: one signed POST, its outcome, nothing else.
//!
//! Everything a receiver can do wrong — hang, reset, redirect, answer forever — ends as an
//! `Attempt` value within the timeout; nothing here panics or blocks the caller's thread.
//! A subscription's credentials (client certificate, OAuth 2.0 token) are applied here too,
//! from caches that live with the `Sender` (see `credentials`).

mod credentials;
mod exchange;
mod poster;
mod resolve;
mod text;

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;
use rustls::RootCertStore;

pub use credentials::{interpret_token_answer, Credentials, TokenError};
pub use text::{error_chain, storable_text};

use crate::address::{AddressPolicy, Refusal};
use crate::retry::AttemptKind;
use crate::signing::{signature_header, Secret};
use credentials::Vault;
pub(crate) use poster::tls_config;
use poster::{add_ca_bundle, trusted_roots, Poster};

/// Settings for the shared client; changing them means building a new `Sender`.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Idle keep-alive connections kept per host.
    pub max_idle_per_host: usize,
    pub connect_timeout: Duration,
    /// How much of a response body is kept for the attempt log.
    pub response_excerpt_bytes: usize,
    pub user_agent: String,
    /// Extra trusted CA certificates (PEM), on top of the system and Mozilla roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub policy: AddressPolicy,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            max_idle_per_host: 64,
            connect_timeout: Duration::from_secs(10),
            response_excerpt_bytes: 1024,
            user_agent: format!("pg_webhook/{}", env!("CARGO_PKG_VERSION")),
            extra_ca_pem: None,
            policy: AddressPolicy::default(),
        }
    }
}

/// Where and how a subscription's events go; shared by all its in-flight deliveries.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Url,
    /// Signing keys, newest first; more than one during a rotation.
    pub secrets: Vec<Secret>,
    pub headers: HeaderMap,
    pub timeout: Duration,
    /// Keep the response headers (for a subscription's callback).
    pub keep_response_headers: bool,
    /// Client certificate and OAuth 2.0 credentials, if the receiver demands them.
    pub auth: Credentials,
}

/// One event ready to send: its `webhook-id`, the exact body bytes and their media type.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: Bytes,
    pub content_type: &'static str,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub started_at: SystemTime,
    pub duration: Duration,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
    /// The response headers as a JSON object (repeated names joined by ", "), when the
    /// endpoint asks for them; bounded by `RESPONSE_HEADERS_LIMIT`.
    pub response_headers: Option<String>,
    pub error: Option<String>,
    pub kind: AttemptKind,
}

#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not build the HTTP client: {}", self.0)
    }
}

impl StdError for BuildError {}

/// Checks that `pem` holds at least one CA certificate (for `pg_webhook.ca_bundle`), each
/// usable as a root, as a sender adds them. Only the bundle: the system's roots are read when a
/// sender is built, not at every reload.
pub fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    add_ca_bundle(&mut RootCertStore::empty(), pem).map_err(|e| e.0)
}

/// A pooled HTTP client that only connects where the address policy allows.
#[derive(Clone)]
pub struct Sender {
    /// For deliveries and token requests.
    poster: Arc<Poster>,
    policy: Arc<AddressPolicy>,
    excerpt_limit: usize,
    user_agent: HeaderValue,
    /// Per-subscription connections (with a client certificate) and tokens, shared by the
    /// clones.
    vault: Arc<Vault>,
}

impl Sender {
    pub fn new(settings: &SenderSettings) -> Result<Sender, BuildError> {
        let policy = Arc::new(settings.policy.clone());
        let roots: Arc<RootCertStore> = trusted_roots(settings.extra_ca_pem.as_deref())?;
        let tls = tls_config(roots.clone(), None).map_err(BuildError)?;
        let poster = Poster::new(settings, &policy, tls).map_err(BuildError)?;
        let user_agent = HeaderValue::from_str(&settings.user_agent)
            .map_err(|_| BuildError("the user agent cannot be sent in a header".into()))?;
        let vault = Vault::new(settings.clone(), policy.clone(), roots, user_agent.clone());
        Ok(Sender {
            poster: Arc::new(poster),
            excerpt_limit: settings.response_excerpt_bytes,
            user_agent,
            vault: Arc::new(vault),
            policy,
        })
    }

    /// Forgets the client certificates' clients and the OAuth tokens of subscriptions other
    /// than these (see `Vault::keep_only`).
    pub fn keep_credentials_of(&self, subscriptions: &std::collections::HashSet<i32>) {
        self.vault.keep_only(subscriptions);
    }

    /// How many subscriptions' clients and tokens are kept.
    pub fn credentials_kept(&self) -> (usize, usize) {
        self.vault.kept()
    }

    /// Signs and POSTs one message. The signature timestamp is the moment of sending, as
    /// receivers reject timestamps far from their clock.
    pub async fn send(&self, endpoint: &Endpoint, message: &Message) -> Attempt {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let finish = |status, excerpt, headers, error, kind| Attempt {
            started_at,
            duration: clock.elapsed(),
            status,
            response_excerpt: excerpt,
            response_headers: headers,
            error,
            kind,
        };
        // IP literals bypass the resolver, so they are checked here.
        if let Err(refusal) = self.check_literal(&endpoint.url) {
            return finish(
                None,
                None,
                None,
                Some(refusal.to_string()),
                AttemptKind::Refused,
            );
        }
        let poster = match self.vault.clients(&self.poster, &endpoint.auth) {
            Ok(poster) => poster,
            Err(e) => return finish(None, None, None, Some(e), AttemptKind::TransportError),
        };
        let mut bearer = None;
        if endpoint.auth.oauth2.is_some() {
            match self
                .vault
                .token(&poster, &endpoint.auth, endpoint.timeout, None)
                .await
            {
                Ok(token) => bearer = Some(token),
                // Retried like an unreachable receiver; the event stays queued.
                Err(e) => return finish(None, None, None, Some(e.text), e.kind),
            }
        }
        let mut answer = self
            .post(&poster, endpoint, message, started_at, bearer.as_ref())
            .await;
        if let (Some(used), Answer::Status { status: 401, .. }) = (&bearer, &answer) {
            // The token may have been revoked before it expired: one new token, one new try.
            match self
                .vault
                .token(&poster, &endpoint.auth, endpoint.timeout, Some(used))
                .await
            {
                Ok(token) => {
                    // Signed anew: the token request took time, and receivers check the clock.
                    answer = self
                        .post(&poster, endpoint, message, SystemTime::now(), Some(&token))
                        .await
                }
                Err(e) => {
                    return finish(
                        Some(401),
                        None,
                        None,
                        Some(format!(
                            "the receiver answered 401 to the oauth2 token, and a new one could not be had: {}",
                            e.text
                        )),
                        AttemptKind::Status {
                            code: 401,
                            retry_after: None,
                        },
                    )
                }
            }
        }
        match answer {
            Answer::Failed(text, kind) => finish(None, None, None, Some(text), kind),
            Answer::Status {
                status,
                retry_after,
                headers,
                excerpt,
                body_error,
            } => {
                let excerpt = (!excerpt.is_empty())
                    .then(|| storable_text(String::from_utf8_lossy(&excerpt).into_owned()));
                // The status line decides the outcome; a broken body is only noted.
                let body_error = body_error.map(|e| format!("reading response body: {e}"));
                finish(
                    Some(status),
                    excerpt,
                    headers,
                    body_error,
                    AttemptKind::Status {
                        code: status,
                        retry_after,
                    },
                )
            }
        }
    }

    /// One signed POST of `message` over `poster`'s connections, with the bearer token if
    /// there is one.
    async fn post(
        &self,
        poster: &Poster,
        endpoint: &Endpoint,
        message: &Message,
        started_at: SystemTime,
        bearer: Option<&HeaderValue>,
    ) -> Answer {
        let timestamp = started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let secrets: Vec<&Secret> = endpoint.secrets.iter().collect();
        let signature = signature_header(&secrets, &message.id, timestamp, &message.body);
        let request = match self.request(endpoint, message, timestamp, signature, bearer) {
            Ok(request) => request,
            Err(text) => return Answer::Failed(text, AttemptKind::TransportError),
        };
        let exchange = self.exchange(
            poster,
            request,
            endpoint.keep_response_headers,
            endpoint.timeout,
        );
        match exchange.await {
            Err(no_answer) => {
                let (text, kind) = no_answer.recorded("the receiver", endpoint.timeout);
                Answer::Failed(text, kind)
            }
            Ok((status, retry_after, headers, excerpt, body_error)) => Answer::Status {
                status,
                retry_after,
                headers,
                excerpt,
                body_error,
            },
        }
    }

    fn check_literal(&self, url: &Url) -> Result<(), Refusal> {
        check_literal(&self.policy, url)
    }
}

/// IP literals bypass the resolver, so they are checked against the policy before connecting.
pub fn check_literal(policy: &AddressPolicy, url: &Url) -> Result<(), Refusal> {
    let host = url.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(addr) => policy.check(host, addr),
        Err(_) => Ok(()),
    }
}

/// What one POST came to: an answer, or why there was none.
enum Answer {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        headers: Option<String>,
        excerpt: Vec<u8>,
        body_error: Option<String>,
    },
    Failed(String, AttemptKind),
}
