//! Receivers that demand authentication: a subscription's TLS client certificate (mTLS) and its
//! OAuth 2.0 client credentials. Checked by the core (`pg_webhook_core::auth`) before anything
//! is stored, at subscribe and by `webhook.set_client_certificate()` / `webhook.set_auth()`.

use pg_webhook_core::address::AddressPolicy;
use pg_webhook_core::auth::{parse_auth, ClientIdentity};
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::{invalid, spi};
use crate::guc::WorkerSettings;
use crate::manage::find_managed;
use crate::privilege::as_extension_owner;
use crate::sql::first_row;
use crate::wake::note_config_changed;

const SET_CLIENT_CERTIFICATE: &str = include_str!("../../sql/queries/set_client_certificate.sql");
const SET_AUTH: &str = include_str!("../../sql/queries/set_auth.sql");
const HEADERS: &str = include_str!("../../sql/queries/subscription_headers.sql");

/// The keys of subscribe's options object that carry credentials.
const KEYS: [&str; 3] = ["client_cert", "client_key", "auth"];

/// A subscription's credentials, checked and ready to store.
#[derive(Debug, Default)]
pub struct Credentials {
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// The `auth` object as given (its secret included), as JSON text.
    pub auth: Option<String>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.client_cert.is_none() && self.auth.is_none()
    }
}

/// Takes the credential arguments out of subscribe's options object (leaving the rest for
/// `delivery::check`), and checks them against the subscription's headers.
pub fn take(options: Option<JsonB>, headers: Option<&JsonB>) -> (Option<JsonB>, Credentials) {
    let Some(JsonB(mut value)) = options else {
        return (None, Credentials::default());
    };
    let Some(fields) = value.as_object_mut() else {
        return (Some(JsonB(value)), Credentials::default());
    };
    let mut text = |key: &str| match fields.remove(key) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let cert = text(KEYS[0]);
    let key = text(KEYS[1]);
    let auth = fields.remove(KEYS[2]);
    let credentials = Credentials {
        auth: check_auth(auth.as_ref(), headers.map(|h| &h.0)),
        ..check_certificate(cert, key)
    };
    (Some(JsonB(value)), credentials)
}

/// Checks a client certificate and key: both or neither, PEM, the key the certificate's.
fn check_certificate(cert: Option<String>, key: Option<String>) -> Credentials {
    match (&cert, &key) {
        (None, None) => {}
        (Some(_), None) => invalid(
            "client_cert is given without client_key: give the certificate's private key too",
        ),
        (None, Some(_)) => {
            invalid("client_key is given without client_cert: give the key's certificate too")
        }
        (Some(c), Some(k)) => {
            if let Err(e) = ClientIdentity::parse(c, k) {
                invalid(e.0)
            }
        }
    }
    Credentials {
        client_cert: cert,
        client_key: key,
        auth: None,
    }
}

/// Checks an `auth` object; returns it as JSON text, or `None` for none.
fn check_auth(
    auth: Option<&serde_json::Value>,
    headers: Option<&serde_json::Value>,
) -> Option<String> {
    let value = match auth {
        None | Some(serde_json::Value::Null) => return None,
        Some(v) => v,
    };
    let oauth = parse_auth(value).unwrap_or_else(|e| invalid(e.0));
    let policy = AddressPolicy::parse(&WorkerSettings::read().allowed_destinations)
        .unwrap_or_else(|e| invalid(format!("pg_webhook.allowed_destinations: {e}")));
    if let Err(refusal) = oauth.check_literal(&policy) {
        invalid(format!("auth.token_url is not allowed: {refusal}"));
    }
    let sets_authorization = headers
        .and_then(|h| h.as_object())
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("authorization")));
    if sets_authorization {
        invalid(
            "headers set Authorization, which auth => oauth2 sends itself (Bearer token): remove one of them",
        );
    }
    Some(value.to_string())
}

/// Replaces a subscription's client certificate and key (two NULLs remove them).
#[pg_extern(name = "_set_client_certificate", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_client_certificate(
    name: Option<&str>,
    client_cert: Option<&str>,
    client_key: Option<&str>,
) -> bool {
    let sub = find_managed(name, "set the client certificate of");
    let checked = check_certificate(
        client_cert.map(str::to_string),
        client_key.map(str::to_string),
    );
    as_extension_owner(|| {
        spi(
            "storing the client certificate",
            Spi::connect_mut(|client| {
                client.update(
                    SET_CLIENT_CERTIFICATE,
                    None,
                    &[
                        sub.id.into(),
                        checked.client_cert.into(),
                        checked.client_key.into(),
                    ],
                )?;
                Ok(())
            }),
        )
    });
    note_config_changed();
    true
}

/// Replaces a subscription's OAuth 2.0 client credentials (NULL removes them).
#[pg_extern(name = "_set_auth", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_auth(name: Option<&str>, auth: Option<JsonB>) -> bool {
    let sub = find_managed(name, "set the credentials of");
    let headers: Option<serde_json::Value> = as_extension_owner(|| {
        spi(
            "reading the subscription's headers",
            Spi::connect(|client| {
                first_row(client, HEADERS, &[sub.id.into()], |row| {
                    row.get::<String>(1)
                })
            }),
        )
    })
    .flatten()
    .and_then(|text| serde_json::from_str(&text).ok());
    let checked = check_auth(auth.as_ref().map(|j| &j.0), headers.as_ref());
    as_extension_owner(|| {
        spi(
            "storing the credentials",
            Spi::connect_mut(|client| {
                client.update(SET_AUTH, None, &[sub.id.into(), checked.into()])?;
                Ok(())
            }),
        )
    });
    note_config_changed();
    true
}

/// Stores a new subscription's credentials (run as the extension owner, in `store`).
pub fn store(
    client: &mut pgrx::spi::SpiClient<'_>,
    id: i32,
    credentials: &Credentials,
) -> pgrx::spi::SpiResult<()> {
    if credentials.client_cert.is_some() {
        client.update(
            SET_CLIENT_CERTIFICATE,
            None,
            &[
                id.into(),
                credentials.client_cert.clone().into(),
                credentials.client_key.clone().into(),
            ],
        )?;
    }
    if credentials.auth.is_some() {
        client.update(
            SET_AUTH,
            None,
            &[id.into(), credentials.auth.clone().into()],
        )?;
    }
    Ok(())
}
