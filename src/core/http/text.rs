//! What is kept of answers and errors: bounded, storable text that never names the URL.

use std::error::Error as StdError;

use reqwest::header::HeaderMap;

use super::resolve::find_refusal;
use crate::retry::AttemptKind;

/// At most this much of the response headers is kept, as JSON.
const RESPONSE_HEADERS_LIMIT: usize = 8 * 1024;

/// Response headers as a JSON object, stopping before `RESPONSE_HEADERS_LIMIT` bytes: a
/// receiver must not be able to make the worker store megabytes per event.
pub(super) fn headers_json(headers: &HeaderMap) -> String {
    let mut object = serde_json::Map::new();
    let mut size = 2;
    for (name, value) in headers {
        let value = storable_text(String::from_utf8_lossy(value.as_bytes()).into_owned());
        let grows = name.as_str().len() + value.len() + 8;
        if size + grows > RESPONSE_HEADERS_LIMIT {
            break;
        }
        size += grows;
        match object.get_mut(name.as_str()) {
            Some(serde_json::Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                object.insert(name.as_str().to_string(), value.into());
            }
        }
    }
    serde_json::Value::Object(object).to_string()
}

/// Text that PostgreSQL can store: `text` and `jsonb` refuse the NUL character, and a receiver
/// must not be able to make the statement that records every outcome fail by sending one.
pub fn storable_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

/// An error with its causes: a client's top-level message is generic ("client error (Connect)");
/// the cause is below it.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    storable_text(parts.join(": "))
}

/// What a delivery or token request that got no answer is recorded as: its error, and its
/// kind (both are retried). hyper's errors never hold the URL. The deadline is the caller's.
pub(super) fn post_failure(e: &hyper_util::client::legacy::Error) -> (String, AttemptKind) {
    (error_chain(e), failure_kind(e))
}

fn failure_kind(e: &(dyn StdError + 'static)) -> AttemptKind {
    if find_refusal(e).is_some() {
        AttemptKind::Refused
    } else {
        AttemptKind::TransportError
    }
}
