use super::*;
use serde_json::json;

const EC_CERT: &str = include_str!("testdata/client_ec.pem");
const EC_KEY: &str = include_str!("testdata/client_ec.key");
const OTHER_EC_KEY: &str = include_str!("testdata/other_ec.key");
const RSA_CERT: &str = include_str!("testdata/client_rsa.pem");
const RSA_KEY: &str = include_str!("testdata/client_rsa.key");
const RSA_PKCS1_KEY: &str = include_str!("testdata/client_rsa_pkcs1.key");

fn identity_error(cert: &str, key: &str) -> String {
    ClientIdentity::parse(cert, key)
        .expect_err("the pair should be refused")
        .0
}

#[test]
fn a_matching_certificate_and_key_are_accepted() {
    let ec = ClientIdentity::parse(EC_CERT, EC_KEY).expect("EC pair");
    let rsa = ClientIdentity::parse(RSA_CERT, RSA_KEY).expect("RSA PKCS#8 pair");
    let pkcs1 = ClientIdentity::parse(RSA_CERT, RSA_PKCS1_KEY).expect("RSA PKCS#1 pair");
    assert_ne!(ec.fingerprint(), rsa.fingerprint());
    // The same key in another encoding is another stored value, so another client.
    assert_ne!(rsa.fingerprint(), pkcs1.fingerprint());
    assert_eq!(
        ClientIdentity::parse(EC_CERT, EC_KEY)
            .unwrap()
            .fingerprint(),
        ec.fingerprint()
    );
    assert!(ec.to_rustls().is_ok());
}

#[test]
fn a_private_key_inside_client_cert_is_refused() {
    assert_eq!(
        identity_error(&format!("{EC_CERT}\n{OTHER_EC_KEY}"), EC_KEY),
        "client_cert holds a private key: give only the certificate and any intermediates in client_cert, and the key in client_key"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    assert_eq!(
        identity_error(EC_CERT, OTHER_EC_KEY),
        "client_key does not match client_cert: give the private key of the first certificate in client_cert"
    );
    assert_eq!(
        identity_error(RSA_CERT, EC_KEY),
        "client_key does not match client_cert: give the private key of the first certificate in client_cert"
    );
}

#[test]
fn text_that_is_not_pem_is_refused_with_the_argument_named() {
    assert_eq!(
        identity_error("hello", EC_KEY),
        "client_cert holds no PEM certificate: give the client's certificate (-----BEGIN CERTIFICATE-----), then any intermediates"
    );
    // A key given as the certificate is not a certificate.
    assert!(identity_error(EC_KEY, EC_KEY).starts_with("client_cert holds no PEM certificate"));
    assert!(identity_error(EC_CERT, "hello").starts_with("client_key holds no PEM private key"));
    // A certificate given as the key.
    assert!(identity_error(EC_CERT, EC_CERT).starts_with("client_key holds no PEM private key"));
    let broken = EC_CERT.replace("-----END CERTIFICATE-----", "");
    assert_eq!(
        identity_error(&broken, EC_KEY),
        "client_cert is not valid PEM: a section has no END line"
    );
    let bad_base64 = EC_KEY.replacen('M', "!", 1);
    let e = identity_error(EC_CERT, &bad_base64);
    assert_eq!(
        e,
        "client_key is not valid PEM: a section is not valid base64"
    );
}

#[test]
fn an_encrypted_key_is_refused_as_no_usable_key() {
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(identity_error(EC_CERT, encrypted).contains("give an unencrypted key"));
}

#[test]
fn a_certificate_whose_der_is_garbage_is_refused() {
    let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    assert!(
        identity_error(garbage, EC_KEY).starts_with("client_cert is not a valid X.509 certificate")
    );
}

#[test]
fn oversized_pem_is_refused() {
    let huge = "x".repeat(MAX_PEM_BYTES + 1);
    assert_eq!(
        identity_error(&huge, EC_KEY),
        format!(
            "client_cert is {} bytes long: the limit is 65536",
            MAX_PEM_BYTES + 1
        )
    );
}

#[test]
fn debug_output_never_shows_the_key_or_the_secret() {
    let identity = ClientIdentity::parse(EC_CERT, EC_KEY).unwrap();
    let shown = format!("{identity:?}");
    assert!(shown.starts_with("ClientIdentity(") && !shown.contains("PRIVATE"));
    let auth = parse_auth(&good_auth()).unwrap();
    let shown = format!("{auth:?}");
    assert!(!shown.contains("s3cret") && !shown.contains("auth.example"));
}

fn good_auth() -> serde_json::Value {
    json!({"type": "oauth2", "token_url": "https://auth.example.com/oauth/token",
           "client_id": "pg webhook", "client_secret": "s3cret", "scope": "hooks:write"})
}

fn auth_error(value: serde_json::Value) -> String {
    parse_auth(&value).expect_err("auth should be refused").0
}

#[test]
fn oauth2_client_credentials_parse() {
    let auth = parse_auth(&good_auth()).unwrap();
    assert_eq!(
        auth.token_url.as_str(),
        "https://auth.example.com/oauth/token"
    );
    assert_eq!(auth.client_id, "pg webhook");
    assert_eq!(auth.client_secret, "s3cret");
    assert_eq!(auth.scope.as_deref(), Some("hooks:write"));
    let mut without_scope = good_auth();
    without_scope.as_object_mut().unwrap().remove("scope");
    assert_eq!(parse_auth(&without_scope).unwrap().scope, None);
    let mut null_scope = good_auth();
    null_scope["scope"] = json!(null);
    assert_eq!(parse_auth(&null_scope).unwrap().scope, None);
}

#[test]
fn unknown_missing_and_mistyped_fields_are_named() {
    let mut unknown = good_auth();
    unknown["audience"] = json!("x");
    assert_eq!(
        auth_error(unknown),
        "auth has an unknown field \"audience\": the fields are type, token_url, client_id, client_secret, scope"
    );
    for field in ["token_url", "client_id", "client_secret"] {
        let mut missing = good_auth();
        missing.as_object_mut().unwrap().remove(field);
        assert_eq!(
            auth_error(missing),
            format!("auth.{field} is missing: it is required for oauth2")
        );
        let mut wrong = good_auth();
        wrong[field] = json!(42);
        assert_eq!(
            auth_error(wrong),
            format!("auth.{field} must be a string, not a number")
        );
    }
    let mut no_type = good_auth();
    no_type.as_object_mut().unwrap().remove("type");
    assert_eq!(auth_error(no_type), "auth.type is missing: give \"oauth2\"");
    let mut basic = good_auth();
    basic["type"] = json!("basic");
    assert_eq!(
        auth_error(basic),
        "auth.type \"basic\" is not supported: give \"oauth2\" (OAuth 2.0 client credentials)"
    );
    let mut scope = good_auth();
    scope["scope"] = json!(["a", "b"]);
    assert_eq!(
        auth_error(scope),
        "auth.scope must be a string, not an array"
    );
    let mut empty = good_auth();
    empty["client_id"] = json!("");
    assert_eq!(auth_error(empty), "auth.client_id must not be empty");
    let mut newline = good_auth();
    newline["client_secret"] = json!("a\nb");
    assert_eq!(
        auth_error(newline),
        "auth.client_secret contains a control character"
    );
    assert!(auth_error(json!("oauth2")).starts_with("auth must be a JSON object such as"));
}

#[test]
fn the_token_url_must_be_http_or_https() {
    let mut ftp = good_auth();
    ftp["token_url"] = json!("ftp://auth.example.com/token");
    assert_eq!(
        auth_error(ftp),
        "auth.token_url: url scheme 'ftp' is not supported: use https:// (or http://)"
    );
    let mut relative = good_auth();
    relative["token_url"] = json!("/token");
    assert!(auth_error(relative).starts_with("auth.token_url: "));
}

#[test]
fn a_token_url_at_an_address_the_policy_refuses_is_known_at_once() {
    let mut metadata = good_auth();
    metadata["token_url"] = json!("http://169.254.169.254/token");
    let auth = parse_auth(&metadata).unwrap();
    let refusal = auth.check_literal(&AddressPolicy::default()).unwrap_err();
    assert_eq!(refusal.class, "link-local");
    assert!(auth
        .check_literal(&AddressPolicy::parse("169.254.169.254").unwrap())
        .is_ok());
    // Names are judged on what they resolve to, when the worker connects.
    let named = parse_auth(&good_auth()).unwrap();
    assert!(named.check_literal(&AddressPolicy::default()).is_ok());
}

#[test]
fn the_fingerprint_changes_with_every_credential() {
    let base = parse_auth(&good_auth()).unwrap().fingerprint();
    for (field, value) in [
        ("token_url", "https://auth.example.com/other"),
        ("client_id", "other"),
        ("client_secret", "other"),
        ("scope", "other"),
    ] {
        let mut changed = good_auth();
        changed[field] = json!(value);
        assert_ne!(parse_auth(&changed).unwrap().fingerprint(), base, "{field}");
    }
}
