//! The connections a delivery's POST goes over: hyper's pooled client (the one reqwest runs on),
//! used directly. reqwest's per-request layers (redirect and retry policies, the URL parsed
//! again for each, a boxed future) cost about as much CPU per request as all the rest; none of
//! them is wanted here (redirects are not followed, retries are the schedule's).
//!
//! Every connection goes through the policy resolver. OAuth token requests go through the same
//! pool. Its TLS configuration trusts Mozilla's roots, the system's (read once per sender) and
//! `pg_webhook.ca_bundle`, and presents a subscription's client certificate when it has one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::resolve::PolicyDns;
use super::{BuildError, SenderSettings};
use crate::address::AddressPolicy;
use crate::auth::ClientIdentity;

type Connector = HttpsConnector<HttpConnector<PolicyDns>>;

/// Interim (1xx) answers a receiver may send before its answer. 100 Continue, 102 Processing
/// and 103 Early Hints come a few at a time; hyper reads past each for free to the receiver and
/// not to the HTTP thread every delivery shares, so a stream of them ends the request.
pub(super) const MAX_INTERIM_ANSWERS: usize = 64;

/// Why a POST got no response head.
pub(super) enum PostError {
    Failed(hyper_util::client::legacy::Error),
    /// More than [`MAX_INTERIM_ANSWERS`] interim answers came first.
    Interim,
}

/// A pool of keep-alive connections, with or without a client certificate.
pub(super) struct Poster {
    client: Client<Connector, Full<Bytes>>,
}

/// The certificates every connection trusts: Mozilla's roots, the system's, and the extra CA
/// bundle.
pub(super) fn trusted_roots(extra_ca_pem: Option<&[u8]>) -> Result<Arc<RootCertStore>, BuildError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Native stores often hold a few certificates that do not parse; those are skipped, as
    // reqwest skips them.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = extra_ca_pem {
        add_ca_bundle(&mut roots, pem)?;
    }
    Ok(Arc::new(roots))
}

/// Adds the certificates of a CA bundle (PEM) to `roots`: at least one, each usable as a root.
pub(super) fn add_ca_bundle(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), BuildError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| BuildError(format!("CA bundle is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(BuildError(
            "CA bundle holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| BuildError(format!("CA bundle holds an unusable certificate: {e}")))?;
    }
    Ok(())
}

/// The TLS configuration of every connection: `roots` trusted, `identity` presented (if any).
pub(crate) fn tls_config(
    roots: Arc<RootCertStore>,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, String> {
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots);
    Ok(match identity {
        None => tls.with_no_client_auth(),
        Some(identity) => {
            let (chain, key) = identity.to_rustls()?;
            tls.with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    })
}

impl Poster {
    pub(super) fn new(
        settings: &SenderSettings,
        policy: &Arc<AddressPolicy>,
        tls: ClientConfig,
    ) -> Result<Poster, String> {
        let mut http = HttpConnector::new_with_resolver(PolicyDns {
            policy: policy.clone(),
        });
        // The TLS layer above takes https; plain http is allowed through it.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .build(https);
        Ok(Poster { client })
    }

    /// Sends `request` and gives its response head (the body is read by the caller). A
    /// receiver that keeps sending interim answers is left: the request is dropped, which
    /// closes its connection.
    pub(super) async fn send(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, PostError> {
        let interim = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
        let counted = Arc::clone(&interim);
        hyper::ext::on_informational(&mut request, move |_| {
            if counted.0.fetch_add(1, Ordering::Relaxed) == MAX_INTERIM_ANSWERS {
                counted.1.notify_one();
            }
        });
        tokio::select! {
            response = self.client.request(request) => response.map_err(PostError::Failed),
            () = interim.1.notified() => Err(PostError::Interim),
        }
    }
}
