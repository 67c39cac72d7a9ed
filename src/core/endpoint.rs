//! Which URLs a subscription may name. Checked once at subscribe time, so a bad URL is a clear
//! error for the DBA instead of an event that fails for a day.

use std::fmt;

use reqwest::Url;

/// Longer URLs are almost certainly a mistake (or an attack on logs); browsers cap near here.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    Empty,
    TooLong(usize),
    Whitespace,
    ControlCharacter,
    Unparsable(String),
    Scheme(String),
    NoHost,
    Credentials,
    Fragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Empty => write!(f, "url is empty: give an absolute http:// or https:// URL"),
            UrlError::TooLong(n) => write!(
                f,
                "url is {n} bytes long as sent (characters outside ASCII percent-encoded): \
                 the limit is {MAX_URL_LEN}"
            ),
            UrlError::Whitespace => write!(
                f,
                "url contains whitespace: percent-encode spaces as %20"
            ),
            UrlError::ControlCharacter => write!(
                f,
                "url contains a control character: remove it or percent-encode it"
            ),
            UrlError::Unparsable(e) => write!(
                f,
                "url is not a valid absolute URL ({e}): give one such as 'https://example.com/hooks'"
            ),
            UrlError::Scheme(s) => write!(
                f,
                "url scheme '{s}' is not supported: use https:// (or http://)"
            ),
            UrlError::NoHost => write!(f, "url has no host: give one such as 'https://example.com/hooks'"),
            UrlError::Credentials => write!(
                f,
                "url contains a user name or password: these would be stored and logged in clear; send credentials with headers => '{{\"Authorization\": \"...\"}}' instead"
            ),
            UrlError::Fragment => write!(
                f,
                "url has a #fragment, which is never sent to a server: remove it"
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// Validates a subscription URL and returns it parsed.
pub fn parse_url(text: &str) -> Result<Url, UrlError> {
    if text.is_empty() {
        return Err(UrlError::Empty);
    }
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(text.len()));
    }
    // The URL parser silently strips tabs and newlines; refuse them before it can.
    if text.chars().any(char::is_whitespace) {
        return Err(UrlError::Whitespace);
    }
    if text.chars().any(char::is_control) {
        return Err(UrlError::ControlCharacter);
    }
    let url = Url::parse(text).map_err(|e| UrlError::Unparsable(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(UrlError::Scheme(other.to_string())),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    // What is stored and sent is the parsed form, where each character outside ASCII takes
    // up to 9 bytes: a URL within the limit as given could be over it there, and the worker
    // would find its subscription misconfigured.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(url.as_str().len()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_pass() {
        for u in [
            "https://billing.example.com/hooks/orders",
            "http://127.0.0.1:8080/x?y=1",
            "https://[::1]:9/",
            "HTTPS://EXAMPLE.COM",
        ] {
            assert!(parse_url(u).is_ok(), "{u}");
        }
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let cases: &[(&str, UrlError)] = &[
            ("", UrlError::Empty),
            ("ftp://example.com/", UrlError::Scheme("ftp".into())),
            ("file:///etc/passwd", UrlError::Scheme("file".into())),
            ("javascript:alert(1)", UrlError::Scheme("javascript".into())),
            ("https://exa mple.com/", UrlError::Whitespace),
            ("https://example.com/\r\nHost: evil", UrlError::Whitespace),
            ("https://example.com/\u{7}", UrlError::ControlCharacter),
            ("https://user:pw@example.com/", UrlError::Credentials),
            ("https://user@example.com/", UrlError::Credentials),
            ("https://example.com/#frag", UrlError::Fragment),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_url(input).unwrap_err(), want, "{input:?}");
        }
        assert!(matches!(
            parse_url("/relative/path"),
            Err(UrlError::Unparsable(_))
        ));
        assert!(matches!(
            parse_url("example.com"),
            Err(UrlError::Unparsable(_))
        ));
        assert!(matches!(
            parse_url("https://"),
            Err(UrlError::Unparsable(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(parse_url(&long), Err(UrlError::TooLong(_))));
    }

    #[test]
    fn the_limit_counts_the_url_as_sent() {
        // 1,000 é are 2,000 bytes as given and 6,000 percent-encoded: stored and sent so, the
        // worker found such a subscription misconfigured at every event.
        let given = format!("http://127.0.0.1:8/ok/{}", "é".repeat(1000));
        assert!(given.len() < 2048);
        assert_eq!(parse_url(&given), Err(UrlError::TooLong(6022)));
        // Exactly at the limit as sent passes.
        let prefix = "https://example.com/";
        let at_limit = format!("{prefix}{}", "%C3%A9".repeat((2048 - prefix.len()) / 6));
        let at_limit = format!("{at_limit}{}", "a".repeat(2048 - at_limit.len()));
        assert_eq!(parse_url(&at_limit).map(|u| u.as_str().len()), Ok(2048));
        assert_eq!(
            UrlError::TooLong(6022).to_string(),
            "url is 6022 bytes long as sent (characters outside ASCII percent-encoded): the \
             limit is 2048"
        );
    }

    #[test]
    fn messages_say_how_to_fix() {
        assert!(UrlError::Scheme("ftp".into())
            .to_string()
            .contains("https://"));
        assert!(UrlError::Credentials.to_string().contains("headers"));
    }
}
