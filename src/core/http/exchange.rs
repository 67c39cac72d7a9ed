//! One delivery's exchange: the request as it goes out (the subscription's headers, then those
//! the sender owns) and what is kept of the answer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};

use super::poster::{PostError, Poster, MAX_INTERIM_ANSWERS};
use super::text::headers_json;
use super::text::post_failure;
use super::{error_chain, Endpoint, Message, Sender};
use crate::retry::{parse_retry_after, AttemptKind};

impl Sender {
    /// The request: the subscription's headers (which may set `User-Agent` and `Accept`),
    /// then those the sender owns.
    pub(super) fn request(
        &self,
        endpoint: &Endpoint,
        message: &Message,
        timestamp: i64,
        signature: String,
        bearer: Option<&HeaderValue>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let mut headers = endpoint.headers.clone();
        headers
            .entry(USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        headers
            .entry(ACCEPT)
            .or_insert_with(|| HeaderValue::from_static("*/*"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(message.content_type));
        let text = |name: &'static str, value: &str| -> Result<(HeaderName, HeaderValue), String> {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the {name} header cannot be sent: {value:?}"))?;
            Ok((HeaderName::from_static(name), value))
        };
        for (name, value) in [
            text("webhook-id", &message.id)?,
            text("webhook-timestamp", &timestamp.to_string())?,
            text("webhook-signature", &signature)?,
        ] {
            headers.insert(name, value);
        }
        if let Some(token) = bearer {
            headers.insert(AUTHORIZATION, token.clone());
        }
        let uri = http::Uri::try_from(endpoint.url.as_str())
            .map_err(|e| format!("the URL cannot be sent: {e}"))?;
        let mut request = http::Request::new(Full::new(message.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// Sends the request and reads what the policy keeps of the answer: status, `Retry-After`,
    /// headers (when kept), and the first `excerpt_limit` bytes of the body, with any error
    /// reading it. One deadline, `timeout` from now, covers it all: a body that stops coming
    /// is an error noted on the answer, whose status still decides.
    pub(super) async fn exchange(
        &self,
        poster: &Poster,
        request: http::Request<Full<Bytes>>,
        keep_headers: bool,
        timeout: Duration,
    ) -> Result<Exchanged, NoAnswer> {
        let deadline = tokio::time::Instant::now() + timeout;
        let response = response_head(poster, request, deadline).await?;
        let status = response.status().as_u16();
        let headers = keep_headers.then(|| headers_json(response.headers()));
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let (excerpt, body_error) =
            read_body(response.into_body(), self.excerpt_limit, deadline, timeout).await;
        Ok((status, retry_after, headers, excerpt, body_error))
    }
}

/// Sends `request` over `poster` and waits until `deadline` for the response head.
pub(super) async fn response_head(
    poster: &Poster,
    request: http::Request<Full<Bytes>>,
    deadline: tokio::time::Instant,
) -> Result<hyper::Response<hyper::body::Incoming>, NoAnswer> {
    match tokio::time::timeout_at(deadline, poster.send(request)).await {
        Err(_) => Err(NoAnswer::TimedOut),
        Ok(Err(PostError::Failed(e))) => Err(NoAnswer::Failed(e)),
        Ok(Err(PostError::Interim)) => Err(NoAnswer::Interim),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Reads the first `limit` bytes of `body` by `deadline` (`timeout` from the request's start):
/// what came, and the error that cut it short, if any.
pub(super) async fn read_body(
    mut body: hyper::body::Incoming,
    limit: usize,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> (Vec<u8>, Option<String>) {
    let mut kept = Vec::new();
    let read = async {
        while kept.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(chunk) = frame.data_ref() {
                        let room = limit - kept.len();
                        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                None => break,
                Some(Err(e)) => return Some(error_chain(&e)),
            }
        }
        None
    };
    let error = match tokio::time::timeout_at(deadline, read).await {
        Ok(error) => error,
        Err(_) => Some(format!("timed out after {} ms", timeout.as_millis())),
    };
    (kept, error)
}

/// Why a request got no answer.
pub(super) enum NoAnswer {
    /// Not within the subscription's timeout.
    TimedOut,
    Failed(hyper_util::client::legacy::Error),
    /// A stream of interim (1xx) answers, and no answer.
    Interim,
}

impl NoAnswer {
    /// What is recorded of it: its error and kind (all are retried). `who` was asked (the
    /// receiver, the token endpoint); `timeout` is the request's.
    pub(super) fn recorded(&self, who: &str, timeout: Duration) -> (String, AttemptKind) {
        match self {
            NoAnswer::TimedOut => (
                format!("timed out after {} ms", timeout.as_millis()),
                AttemptKind::TransportError,
            ),
            NoAnswer::Failed(e) => post_failure(e),
            NoAnswer::Interim => (
                format!(
                    "{who} sent more than {MAX_INTERIM_ANSWERS} interim (1xx) answers before \
                     its answer: the request was given up"
                ),
                AttemptKind::TransportError,
            ),
        }
    }
}

/// What an exchange read: status, Retry-After, headers (JSON), body excerpt, body error.
pub(super) type Exchanged = (
    u16,
    Option<Duration>,
    Option<String>,
    Vec<u8>,
    Option<String>,
);
