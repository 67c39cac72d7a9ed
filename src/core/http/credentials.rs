//! A subscription's credentials on the HTTP thread: connections that present its TLS
//! certificate, and its OAuth 2.0 access token. Both are cached per subscription and replaced when the
//! subscription's credentials change (they are keyed by a fingerprint of them).
//!
//! Tokens come from the client credentials grant (RFC 6749 section 4.4): a form POST of
//! `grant_type=client_credentials` (and `scope`), the client authenticated with HTTP Basic
//! (section 2.3.1, the method every server must support). A token is used until shortly before
//! its `expires_in` runs out; one subscription's deliveries wait for a single fetch. Token
//! requests go over the same connections as the deliveries (`Poster`), with the same limits
//! on what a server may send back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use rustls::RootCertStore;

use super::exchange::{read_body, response_head};
use super::poster::{tls_config, Poster};
use super::{check_literal, storable_text, SenderSettings};
use crate::address::AddressPolicy;
use crate::auth::{ClientIdentity, OAuth2};
use crate::retry::AttemptKind;

/// The credentials a receiver demands, for one subscription.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Whose they are: the caches are per subscription.
    pub subscription: i32,
    pub identity: Option<ClientIdentity>,
    pub oauth2: Option<OAuth2>,
}

/// Why no token could be had: recorded on the attempt, which is retried on the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub text: String,
    pub kind: AttemptKind,
}

/// A token endpoint's answer is read up to this size.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// Lifetime of a token whose answer gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Tokens are used for at most a day, whatever `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(86_400);
/// A token is replaced this long before it expires (a fifth of its lifetime when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

struct Token {
    bearer: HeaderValue,
    fresh_until: Instant,
}

#[derive(Default)]
struct SlotState {
    token: Option<Token>,
    /// The last fetch's failure: deliveries that were waiting for it take it as theirs.
    failed: Option<(Instant, TokenError)>,
}

struct Slot {
    fingerprint: [u8; 32],
    state: tokio::sync::Mutex<SlotState>,
}

pub(super) struct Vault {
    settings: SenderSettings,
    policy: Arc<AddressPolicy>,
    roots: Arc<RootCertStore>,
    /// Per subscription with a client certificate: its fingerprint, and the connections for
    /// its deliveries and token requests, presenting the certificate.
    clients: Mutex<HashMap<i32, Presenting>>,
    tokens: Mutex<HashMap<i32, Arc<Slot>>>,
    user_agent: HeaderValue,
}

type Presenting = ([u8; 32], Arc<Poster>);

impl Vault {
    pub(super) fn new(
        settings: SenderSettings,
        policy: Arc<AddressPolicy>,
        roots: Arc<RootCertStore>,
        user_agent: HeaderValue,
    ) -> Vault {
        Vault {
            settings,
            policy,
            roots,
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            user_agent,
        }
    }

    /// The connections for a subscription (deliveries, token requests): the shared ones, or
    /// ones that present its certificate.
    pub(super) fn clients(
        &self,
        shared_poster: &Arc<Poster>,
        auth: &Credentials,
    ) -> Result<Arc<Poster>, String> {
        let Some(identity) = &auth.identity else {
            return Ok(shared_poster.clone());
        };
        let fingerprint = identity.fingerprint();
        // A poisoned lock only means another delivery panicked mid-insert; the map is intact.
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, poster)) = clients.get(&auth.subscription) {
            if *seen == fingerprint {
                return Ok(poster.clone());
            }
        }
        let tls = tls_config(self.roots.clone(), Some(identity))?;
        let poster = Arc::new(Poster::new(&self.settings, &self.policy, tls)?);
        clients.insert(auth.subscription, (fingerprint, poster.clone()));
        Ok(poster)
    }

    /// Forgets the clients and tokens of subscriptions other than these (unsubscribed and
    /// drained, say): kept, they were never dropped, however many subscriptions came and went.
    /// Requests in flight keep what they took.
    pub(super) fn keep_only(&self, subscriptions: &HashSet<i32>) {
        (self.clients.lock().unwrap_or_else(|e| e.into_inner()))
            .retain(|id, _| subscriptions.contains(id));
        (self.tokens.lock().unwrap_or_else(|e| e.into_inner()))
            .retain(|id, _| subscriptions.contains(id));
    }

    /// How many subscriptions' clients and tokens are kept.
    pub(super) fn kept(&self) -> (usize, usize) {
        (
            self.clients.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len(),
        )
    }

    fn slot(&self, subscription: i32, oauth: &OAuth2) -> Arc<Slot> {
        let fingerprint = oauth.fingerprint();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(&subscription) {
            Some(slot) if slot.fingerprint == fingerprint => slot.clone(),
            // New credentials: the old token (and any failure) belongs to the old ones.
            _ => {
                let slot = Arc::new(Slot {
                    fingerprint,
                    state: tokio::sync::Mutex::new(SlotState::default()),
                });
                tokens.insert(subscription, slot.clone());
                slot
            }
        }
    }

    /// The `Authorization` value for a subscription's next request: the cached token while it
    /// is fresh and not `refused` (the one a receiver just answered 401 to), else a new one.
    pub(super) async fn token(
        &self,
        poster: &Poster,
        auth: &Credentials,
        timeout: Duration,
        refused: Option<&HeaderValue>,
    ) -> Result<HeaderValue, TokenError> {
        let Some(oauth) = &auth.oauth2 else {
            return Err(token_error("no oauth2 credentials"));
        };
        let slot = self.slot(auth.subscription, oauth);
        let asked = Instant::now();
        let mut state = slot.state.lock().await;
        if let Some(token) = &state.token {
            if token.fresh_until > Instant::now() && Some(&token.bearer) != refused {
                return Ok(token.bearer.clone());
            }
        }
        if let Some((at, e)) = &state.failed {
            if *at >= asked {
                return Err(e.clone());
            }
        }
        state.token = None;
        match self.fetch(poster, oauth, timeout).await {
            Ok((bearer, lifetime)) => {
                let margin = REFRESH_MARGIN.min(lifetime / 5);
                state.token = Some(Token {
                    bearer: bearer.clone(),
                    fresh_until: Instant::now() + lifetime - margin,
                });
                state.failed = None;
                Ok(bearer)
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

fn token_error(text: impl std::fmt::Display) -> TokenError {
    TokenError {
        text: format!("oauth2 token request failed: {text}"),
        kind: AttemptKind::TransportError,
    }
}

impl Vault {
    /// One token request. Errors never contain the token URL, the secret or a token.
    async fn fetch(
        &self,
        poster: &Poster,
        oauth: &OAuth2,
        timeout: Duration,
    ) -> Result<(HeaderValue, Duration), TokenError> {
        if let Err(refusal) = check_literal(&self.policy, &oauth.token_url) {
            return Err(TokenError {
                text: format!("oauth2 token request failed: {refusal}"),
                kind: AttemptKind::Refused,
            });
        }
        let request = self.token_request(oauth)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let failed = |(text, kind): (String, AttemptKind)| TokenError {
            text: format!("oauth2 token request failed: {text}"),
            kind,
        };
        let response = response_head(poster, request, deadline)
            .await
            .map_err(|no_answer| failed(no_answer.recorded("the token endpoint", timeout)))?;
        let status = response.status().as_u16();
        // One byte over the limit tells an answer that is too long.
        let (body, error) = read_body(
            response.into_body(),
            MAX_TOKEN_ANSWER + 1,
            deadline,
            timeout,
        )
        .await;
        if let Some(e) = error {
            return Err(token_error(format!("reading its answer: {e}")));
        }
        interpret_token_answer(status, &body)
    }

    /// The token request: a form POST of the client credentials grant, the client
    /// authenticated with HTTP Basic.
    fn token_request(&self, oauth: &OAuth2) -> Result<http::Request<Full<Bytes>>, TokenError> {
        // RFC 6749 2.3.1: both are form-encoded before they are joined for Basic.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!(
            "{}:{}",
            encode(&oauth.client_id),
            encode(&oauth.client_secret)
        ));
        let mut basic = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| token_error("the client credentials cannot be sent in a header"))?;
        basic.set_sensitive(true);
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &oauth.scope {
            form.append_pair("scope", scope);
        }
        let uri = http::Uri::try_from(oauth.token_url.as_str())
            .map_err(|_| token_error("the token URL cannot be sent"))?;
        let mut request = http::Request::new(Full::new(Bytes::from(form.finish())));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, basic);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(USER_AGENT, self.user_agent.clone());
        Ok(request)
    }
}

/// What a token endpoint's answer (RFC 6749 sections 5.1 and 5.2) gives: the `Authorization`
/// value to send and how long the token may be used. Its text in errors is only the standard
/// `error` and `error_description` of a refusal, never a token.
pub fn interpret_token_answer(
    status: u16,
    body: &[u8],
) -> Result<(HeaderValue, Duration), TokenError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(|v| v.as_str())
                .map(|s| s.chars().take(200).collect::<String>())
        };
        let detail = match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => format!(": {e} ({d})"),
            (Some(e), None) => format!(": {e}"),
            _ => String::new(),
        };
        return Err(token_error(storable_text(format!(
            "the token endpoint answered HTTP {status}{detail}"
        ))));
    }
    if body.len() > MAX_TOKEN_ANSWER {
        return Err(token_error("the token endpoint's answer is over 64 KiB"));
    }
    let Some(json) = json.filter(serde_json::Value::is_object) else {
        return Err(token_error(
            "the token endpoint's answer is not a JSON object",
        ));
    };
    let token = match json.get("access_token").and_then(|v| v.as_str()) {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(token_error(
                "the token endpoint's answer has no access_token",
            ))
        }
    };
    match json.get("token_type").and_then(|v| v.as_str()) {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => {
            return Err(token_error(storable_text(format!(
                "the token endpoint gave a token of type \"{}\": only Bearer tokens are supported",
                t.chars().take(40).collect::<String>()
            ))))
        }
    }
    let lifetime = match json.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => {
            let seconds = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()))
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    token_error("the token endpoint's expires_in is not a number of seconds")
                })?;
            Duration::from_secs_f64(seconds.min(MAX_LIFETIME.as_secs_f64()))
        }
    };
    let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        token_error("the access_token has characters that cannot be sent in a header")
    })?;
    bearer.set_sensitive(true);
    Ok((bearer, lifetime))
}
