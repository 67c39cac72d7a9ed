//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, spec v1).
//!
//! Receivers verify with stock libraries, so every byte here follows the spec: the signed
//! content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64-decoded part of a
//! `whsec_` secret, and the header carries `v1,<base64 HMAC-SHA256>` entries separated by spaces.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix every secret carries in its text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// The spec asks for at least 24 random bytes; fewer would make guessing feasible.
pub const MIN_SECRET_BYTES: usize = 24;
/// An upper bound that keeps secrets sane to store and copy; the spec suggests 24–64.
pub const MAX_SECRET_BYTES: usize = 64;
/// What `Secret::generate` uses: comfortably above the minimum.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// A signing key. Its `Debug` form never shows the key, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a secret's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    Empty,
    NotBase64,
    TooShort(usize),
    TooLong(usize),
    Random(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => write!(
                f,
                "secret is empty: pass NULL to generate one, or 'whsec_' followed by base64 of {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} random bytes"
            ),
            SecretError::NotBase64 => write!(
                f,
                "secret is not valid base64 after the 'whsec_' prefix: expected 'whsec_' followed by standard base64 (A-Z a-z 0-9 + / =)"
            ),
            SecretError::TooShort(n) => write!(
                f,
                "secret decodes to {n} bytes, fewer than the {MIN_SECRET_BYTES} the Standard Webhooks spec requires: pass NULL to generate one"
            ),
            SecretError::TooLong(n) => write!(
                f,
                "secret decodes to {n} bytes, more than the maximum of {MAX_SECRET_BYTES}"
            ),
            SecretError::Random(e) => write!(f, "could not generate a random secret: {e}"),
        }
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// Parses `whsec_<base64>`; the bare base64 text is accepted too, as the spec allows.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        Secret::from_bytes(key)
    }

    pub fn from_bytes(key: Vec<u8>) -> Result<Secret, SecretError> {
        match key.len() {
            n if n < MIN_SECRET_BYTES => Err(SecretError::TooShort(n)),
            n if n > MAX_SECRET_BYTES => Err(SecretError::TooLong(n)),
            _ => Ok(Secret { key }),
        }
    }

    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Secret, SecretError> {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        getrandom::getrandom(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        Secret::from_bytes(key)
    }

    /// The canonical text form, `whsec_<base64>`, which is what gets stored and shown.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail for a validated secret.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` signature over exactly these bytes.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", BASE64.encode(tag))
    }

    /// Checks one `v1,<base64>` signature in constant time.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = BASE64.decode(encoded) else {
            return false;
        };
        self.mac(msg_id, timestamp, body).verify_slice(&tag).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.key.len())
    }
}

/// The `webhook-signature` value: one signature per valid secret, newest first, space-separated,
/// so a receiver holding either key accepts the message during a rotation.
pub fn signature_header(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when any signature in a `webhook-signature` header matches the secret.
pub fn header_matches(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    header
        .split(' ')
        .any(|sig| secret.verify(msg_id, timestamp, body, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vectors from the Standard Webhooks reference implementations.
    const A_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const A_TS: i64 = 1614265330;
    const A_BODY: &str = r#"{"test": 2432232314}"#;
    const A_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn vector_a_signs_and_verifies() {
        let s = Secret::parse(A_SECRET).unwrap();
        assert_eq!(s.sign(A_ID, A_TS, A_BODY.as_bytes()), A_SIG);
        assert!(s.verify(A_ID, A_TS, A_BODY.as_bytes(), A_SIG));
    }

    #[test]
    fn vector_a_with_last_character_changed_does_not_verify() {
        let s = Secret::parse(A_SECRET).unwrap();
        let tampered = A_SIG.replace("1OE=", "1OA=");
        assert!(!s.verify(A_ID, A_TS, A_BODY.as_bytes(), &tampered));
    }

    #[test]
    fn vector_b_signs() {
        let s = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            s.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_changed_body_id_or_timestamp_does_not_verify() {
        let s = Secret::parse(A_SECRET).unwrap();
        assert!(!s.verify(A_ID, A_TS, br#"{"test": 2432232315}"#, A_SIG));
        assert!(!s.verify("msg_other", A_TS, A_BODY.as_bytes(), A_SIG));
        assert!(!s.verify(A_ID, A_TS + 1, A_BODY.as_bytes(), A_SIG));
        assert!(!s.verify(A_ID, A_TS, A_BODY.as_bytes(), "v2,garbage"));
        assert!(!s.verify(A_ID, A_TS, A_BODY.as_bytes(), "v1,not base64!"));
    }

    #[test]
    fn bare_base64_is_accepted_and_normalised() {
        let s = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(s.to_text(), A_SECRET);
    }

    #[test]
    fn malformed_secrets_are_refused_with_the_reason() {
        assert_eq!(Secret::parse(""), Err(SecretError::Empty));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        assert_eq!(Secret::parse("whsec_@@@@"), Err(SecretError::NotBase64));
        assert_eq!(
            Secret::parse("whsec_c2hvcnQ="),
            Err(SecretError::TooShort(5))
        );
        let long = format!("whsec_{}", BASE64.encode([7u8; 65]));
        assert_eq!(Secret::parse(&long), Err(SecretError::TooLong(65)));
        assert!(SecretError::TooShort(5).to_string().contains("24"));
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.to_text().starts_with(SECRET_PREFIX));
        assert_eq!(Secret::parse(&a.to_text()).unwrap(), a);
    }

    #[test]
    fn rotation_header_carries_both_and_either_key_verifies() {
        let new = Secret::generate().unwrap();
        let old = Secret::parse(A_SECRET).unwrap();
        let h = signature_header(&[&new, &old], A_ID, A_TS, A_BODY.as_bytes());
        assert_eq!(h.split(' ').count(), 2);
        assert!(h.ends_with(A_SIG));
        assert!(header_matches(&new, A_ID, A_TS, A_BODY.as_bytes(), &h));
        assert!(header_matches(&old, A_ID, A_TS, A_BODY.as_bytes(), &h));
        let stranger = Secret::generate().unwrap();
        assert!(!header_matches(
            &stranger,
            A_ID,
            A_TS,
            A_BODY.as_bytes(),
            &h
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = Secret::parse(A_SECRET).unwrap();
        assert!(!format!("{s:?}").contains("MfKQ"));
    }
}
