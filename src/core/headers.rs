//! Custom static headers a subscription adds to every request (an `Authorization` token, a
//! routing key). Validated up front: a header that would break framing, spoof the signature or
//! inject a second header must never reach the wire.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub const MAX_HEADERS: usize = 32;
pub const MAX_VALUE_LEN: usize = 8192;

/// Names the sender owns: framing, routing and the signature itself.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    NotAnObject(&'static str),
    TooMany(usize),
    BadName(String),
    Reserved(String),
    NotAString(String),
    BadValue(String),
    ValueTooLong(String, usize),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotAnObject(kind) => write!(
                f,
                "headers must be a JSON object of name/value strings, such as '{{\"Authorization\": \"Bearer ...\"}}', not a JSON {kind}"
            ),
            HeaderError::TooMany(n) => {
                write!(f, "headers has {n} entries: the limit is {MAX_HEADERS}")
            }
            HeaderError::BadName(n) => write!(
                f,
                "header name '{}' is not a valid HTTP header name: use letters, digits and - only",
                n.escape_debug()
            ),
            HeaderError::Reserved(n) => write!(
                f,
                "header '{n}' is set by pg_webhook itself and cannot be overridden"
            ),
            HeaderError::NotAString(n) => write!(
                f,
                "header '{n}' must have a string value: quote it, e.g. '{{\"{n}\": \"42\"}}'"
            ),
            HeaderError::BadValue(n) => write!(
                f,
                "header '{n}' has a value with a line break or control character: remove it"
            ),
            HeaderError::ValueTooLong(n, len) => write!(
                f,
                "header '{n}' value is {len} bytes: the limit is {MAX_VALUE_LEN}"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Validates a `headers` JSON object into a header map ready to send.
pub fn parse_headers(json: &serde_json::Value) -> Result<HeaderMap, HeaderError> {
    let serde_json::Value::Object(map) = json else {
        return Err(HeaderError::NotAnObject(json_kind(json)));
    };
    if map.len() > MAX_HEADERS {
        return Err(HeaderError::TooMany(map.len()));
    }
    let mut out = HeaderMap::with_capacity(map.len());
    for (name, value) in map {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeaderError::BadName(name.clone()))?;
        let lower = header.as_str();
        if RESERVED.contains(&lower) || lower.starts_with("proxy-") {
            return Err(HeaderError::Reserved(lower.to_string()));
        }
        let serde_json::Value::String(text) = value else {
            return Err(HeaderError::NotAString(name.clone()));
        };
        if text.len() > MAX_VALUE_LEN {
            return Err(HeaderError::ValueTooLong(name.clone(), text.len()));
        }
        // HeaderValue accepts obs-text bytes but not CR, LF or other controls except tab.
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HeaderError::BadValue(name.clone()));
        }
        let value = HeaderValue::from_str(text).map_err(|_| HeaderError::BadValue(name.clone()))?;
        out.append(header, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_headers_pass() {
        let h = parse_headers(
            &json!({"Authorization": "Bearer x", "X-Tenant": "7", "User-Agent": "me"}),
        )
        .unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h["x-tenant"], "7");
        assert!(parse_headers(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn bad_headers_name_the_problem() {
        let cases = [
            (json!([]), HeaderError::NotAnObject("array")),
            (json!("x"), HeaderError::NotAnObject("string")),
            (
                json!({"bad name": "x"}),
                HeaderError::BadName("bad name".into()),
            ),
            (json!({"": "x"}), HeaderError::BadName("".into())),
            (
                json!({"Host": "evil"}),
                HeaderError::Reserved("host".into()),
            ),
            (
                json!({"Webhook-Signature": "v1,x"}),
                HeaderError::Reserved("webhook-signature".into()),
            ),
            (
                json!({"Content-Length": "1"}),
                HeaderError::Reserved("content-length".into()),
            ),
            (
                json!({"Proxy-Authorization": "x"}),
                HeaderError::Reserved("proxy-authorization".into()),
            ),
            (json!({"X-Num": 7}), HeaderError::NotAString("X-Num".into())),
            (
                json!({"X-Inject": "a\r\nHost: evil"}),
                HeaderError::BadValue("X-Inject".into()),
            ),
            (
                json!({"X-Nul": "a\u{0}b"}),
                HeaderError::BadValue("X-Nul".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_headers(&input).unwrap_err(), want, "{input}");
        }
        let many: serde_json::Map<_, _> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}"), json!("v")))
            .collect();
        assert_eq!(
            parse_headers(&serde_json::Value::Object(many)).unwrap_err(),
            HeaderError::TooMany(MAX_HEADERS + 1)
        );
        let long = json!({"X-Long": "a".repeat(MAX_VALUE_LEN + 1)});
        assert!(matches!(
            parse_headers(&long),
            Err(HeaderError::ValueTooLong(..))
        ));
    }
}
