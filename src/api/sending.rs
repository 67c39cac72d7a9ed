//! Where and how a subscription's requests go: URL, secret, headers, timeout, retry schedule and
//! body format, each checked with an error that names the problem.

use pg_webhook_core::endpoint::parse_url;
use pg_webhook_core::headers::parse_headers;
use pg_webhook_core::payload::{Format, UnknownFormat};
use pg_webhook_core::retry::RetryPolicy;
use pg_webhook_core::signing::Secret;
use pg_webhook_core::Url;
use pgrx::JsonB;

use crate::error::invalid;

/// Per-subscription timeout bounds.
const MAX_TIMEOUT_MS: i64 = 300_000;

/// A subscription's request settings, checked.
pub struct Sending {
    pub url: Url,
    pub secret: Secret,
    pub headers: serde_json::Value,
    pub timeout_ms: Option<i64>,
    /// The retry delays as given (`None`: the default schedule).
    pub schedule: Option<Vec<i64>>,
    pub policy: RetryPolicy,
    pub format: Format,
}

pub fn check(
    url: Option<&str>,
    secret: Option<&str>,
    headers: Option<JsonB>,
    timeout_ms: Option<i64>,
    max_attempts: Option<i32>,
    retry_schedule_ms: Option<Vec<Option<i64>>>,
    format: Option<&str>,
) -> Sending {
    let format: Format = format
        .unwrap_or("database")
        .parse()
        .unwrap_or_else(|e: UnknownFormat| invalid(e.to_string()));
    let Some(url) = url else {
        invalid("url must not be NULL: give the endpoint, such as 'https://example.com/hooks'")
    };
    let url = parse_url(url).unwrap_or_else(|e| invalid(e.to_string()));
    let secret = match secret {
        None => Secret::generate(),
        Some(text) => Secret::parse(text),
    }
    .unwrap_or_else(|e| invalid(e.to_string()));
    let headers = headers.map_or(serde_json::json!({}), |j| j.0);
    parse_headers(&headers).unwrap_or_else(|e| invalid(e.to_string()));
    if let Some(ms) = timeout_ms {
        if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
            invalid(format!(
                "timeout of {ms} ms is out of range: it must be between 1 ms and 5 minutes"
            ));
        }
    }
    let schedule: Option<Vec<i64>> = retry_schedule_ms.map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                d.unwrap_or_else(|| {
                    invalid(format!(
                        "retry_schedule[{}] is NULL: give an interval",
                        i + 1
                    ))
                })
            })
            .collect()
    });
    let policy = RetryPolicy::new(schedule.as_deref(), max_attempts.map(i64::from))
        .unwrap_or_else(|e| invalid(e.to_string()));
    Sending {
        url,
        secret,
        headers,
        timeout_ms,
        schedule,
        policy,
        format,
    }
}
