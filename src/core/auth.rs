//! Receivers that demand authentication: a TLS client certificate (mTLS) and OAuth 2.0 client
//! credentials. Both are checked here when a subscription is made or loaded, with errors that
//! name the argument or field; `http::credentials` uses them on the HTTP thread.

use std::fmt;
use std::sync::Arc;

use reqwest::Url;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::{Error as PemError, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::address::{AddressPolicy, Refusal};
use crate::endpoint::parse_url;

/// Far more than a certificate chain or key needs; keeps a subscription row small.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// What is wrong with a subscription's credentials, worded for the user who gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

fn fail<T>(text: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError(text.into()))
}

/// A TLS client certificate chain and its private key, checked to belong together.
#[derive(Clone)]
pub struct ClientIdentity {
    /// Certificate chain then key, as PEM (what `to_rustls` reads and the fingerprint covers).
    pem: Arc<Vec<u8>>,
    fingerprint: [u8; 32],
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        write!(f, "ClientIdentity({})", hex(&self.fingerprint[..8]))
    }
}

impl ClientIdentity {
    /// Parses `client_cert` (the client's certificate first, then any intermediates) and
    /// `client_key` (unencrypted PKCS#8, PKCS#1 or SEC1), and checks the key is the
    /// certificate's.
    pub fn parse(cert_pem: &str, key_pem: &str) -> Result<ClientIdentity, AuthError> {
        for (what, text) in [("client_cert", cert_pem), ("client_key", key_pem)] {
            if text.len() > MAX_PEM_BYTES {
                return fail(format!(
                    "{what} is {} bytes long: the limit is {MAX_PEM_BYTES}",
                    text.len()
                ));
            }
        }
        let certs = parse_certs(cert_pem)?;
        let key = parse_key(key_pem)?;
        let signing = any_supported_type(&key).map_err(|e| {
            AuthError(format!(
                "client_key is not a usable private key ({e}): give an RSA, ECDSA (P-256, P-384) or Ed25519 key"
            ))
        })?;
        match CertifiedKey::new(certs, signing).keys_match() {
            Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return fail(
                    "client_key does not match client_cert: give the private key of the first certificate in client_cert",
                )
            }
            Err(e) => {
                return fail(format!(
                    "client_cert is not a valid X.509 certificate: {e}"
                ))
            }
        }
        let mut pem = Vec::with_capacity(cert_pem.len() + key_pem.len() + 1);
        pem.extend_from_slice(cert_pem.as_bytes());
        pem.push(b'\n');
        pem.extend_from_slice(key_pem.as_bytes());
        let fingerprint = Sha256::digest(&pem).into();
        let identity = ClientIdentity {
            pem: Arc::new(pem),
            fingerprint,
        };
        // The TLS configuration the connections will use, so a subscription that passes here
        // can connect.
        crate::http::tls_config(Arc::new(rustls::RootCertStore::empty()), Some(&identity))
            .map_err(|e| {
                AuthError(format!(
                    "client_cert and client_key cannot be used for TLS: {e}"
                ))
            })?;
        Ok(identity)
    }

    /// Identifies the pair without revealing it: a changed certificate or key is a new client.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The chain and key for a rustls client configuration.
    pub(crate) fn to_rustls(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let certs = CertificateDer::pem_slice_iter(&self.pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("client certificate: {}", pem_error(&e)))?;
        let key = PrivateKeyDer::from_pem_slice(&self.pem)
            .map_err(|e| format!("client key: {}", pem_error(&e)))?;
        Ok((certs, key))
    }
}

fn parse_certs(text: &str) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| AuthError(format!("client_cert is not valid PEM: {}", pem_error(&e))))?;
    if certs.is_empty() {
        return fail(
            "client_cert holds no PEM certificate: give the client's certificate (-----BEGIN CERTIFICATE-----), then any intermediates",
        );
    }
    // client_cert is shown to every role that can see the subscription, and a key in it would
    // be taken instead of client_key.
    if PrivateKeyDer::from_pem_slice(text.as_bytes()).is_ok() {
        return fail(
            "client_cert holds a private key: give only the certificate and any intermediates in client_cert, and the key in client_key",
        );
    }
    Ok(certs)
}

fn parse_key(text: &str) -> Result<PrivateKeyDer<'static>, AuthError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        PemError::NoItemsFound => AuthError(
            "client_key holds no PEM private key: give an unencrypted key (-----BEGIN PRIVATE KEY-----, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"
                .into(),
        ),
        e => AuthError(format!("client_key is not valid PEM: {}", pem_error(&e))),
    })
}

/// PEM errors without the bytes they quote (a key's line must not reach an error message).
fn pem_error(e: &PemError) -> String {
    match e {
        PemError::MissingSectionEnd { .. } => "a section has no END line".into(),
        PemError::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        PemError::Base64Decode(_) => "a section is not valid base64".into(),
        PemError::NoItemsFound => "nothing found".into(),
        PemError::SectionTooLarge => "a section is too large".into(),
        other => format!("{other}"),
    }
}

/// OAuth 2.0 client credentials (RFC 6749 section 4.4): the worker gets a token from
/// `token_url` and sends it as `Authorization: Bearer`.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2 {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
}

impl fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret, nor the URL (it may carry a token of its own).
        write!(f, "OAuth2 {{ client_id: {:?} }}", self.client_id)
    }
}

/// The fields of an `auth` object, as the errors list them.
const FIELDS: &str = "type, token_url, client_id, client_secret, scope";

/// Parses a subscription's `auth` object:
/// `{"type": "oauth2", "token_url": "https://…", "client_id": "…", "client_secret": "…",
/// "scope": "…"}` (`scope` optional).
pub fn parse_auth(value: &serde_json::Value) -> Result<OAuth2, AuthError> {
    let Some(fields) = value.as_object() else {
        return fail(format!(
            "auth must be a JSON object such as {{\"type\": \"oauth2\", \"token_url\": \"https://auth.example.com/token\", \"client_id\": \"…\", \"client_secret\": \"…\"}}, not {}",
            json_kind(value)
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.split(", ").any(|f| f == *k)) {
        return fail(format!(
            "auth has an unknown field \"{}\": the fields are {FIELDS}",
            unknown.escape_debug()
        ));
    }
    match fields.get("type") {
        None => return fail("auth.type is missing: give \"oauth2\""),
        Some(serde_json::Value::String(t)) if t == "oauth2" => {}
        Some(serde_json::Value::String(t)) => {
            return fail(format!(
                "auth.type \"{}\" is not supported: give \"oauth2\" (OAuth 2.0 client credentials)",
                t.escape_debug()
            ))
        }
        Some(other) => {
            return fail(format!(
                "auth.type must be a string (\"oauth2\"), not {}",
                json_kind(other)
            ))
        }
    }
    let text = |name: &str, required: bool| -> Result<Option<String>, AuthError> {
        match fields.get(name) {
            None | Some(serde_json::Value::Null) if required => {
                fail(format!("auth.{name} is missing: it is required for oauth2"))
            }
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => {
                if required && s.is_empty() {
                    return fail(format!("auth.{name} must not be empty"));
                }
                if s.chars().any(char::is_control) {
                    return fail(format!("auth.{name} contains a control character"));
                }
                if s.len() > 4096 {
                    return fail(format!(
                        "auth.{name} is {} bytes long: the limit is 4096",
                        s.len()
                    ));
                }
                Ok(Some(s.clone()))
            }
            Some(other) => fail(format!(
                "auth.{name} must be a string, not {}",
                json_kind(other)
            )),
        }
    };
    let token_url = text("token_url", true)?.unwrap_or_default();
    let token_url = parse_url(&token_url).map_err(|e| AuthError(format!("auth.token_url: {e}")))?;
    let client_id = text("client_id", true)?.unwrap_or_default();
    let client_secret = text("client_secret", true)?.unwrap_or_default();
    let scope = text("scope", false)?.filter(|s| !s.trim().is_empty());
    Ok(OAuth2 {
        token_url,
        client_id,
        client_secret,
        scope,
    })
}

impl OAuth2 {
    /// A token URL whose host is an IP address the policy refuses is known to fail at once;
    /// names are checked when the worker connects (like the endpoint's), on what they resolve to.
    pub fn check_literal(&self, policy: &AddressPolicy) -> Result<(), Refusal> {
        crate::http::check_literal(policy, &self.token_url)
    }

    /// Identifies these credentials without revealing them: tokens cached for other values
    /// are not used.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            self.token_url.as_str(),
            &self.client_id,
            &self.client_secret,
            self.scope.as_deref().unwrap_or(""),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hash.finalize().into()
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
