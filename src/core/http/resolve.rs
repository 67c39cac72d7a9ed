//! The resolver every connection goes through, so the address policy judges the addresses the
//! client actually connects to: reqwest's (token requests) and hyper's (deliveries).

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name as HyperName;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address::{AddressPolicy, Refusal};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The resolver of reqwest's clients: only addresses the policy allows come back, so the client
/// cannot connect anywhere else.
pub(super) struct PolicyResolver {
    pub(super) policy: Arc<AddressPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed = allowed_addresses(&policy, host).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The same resolver for hyper's connector.
#[derive(Clone)]
pub(super) struct PolicyDns {
    pub(super) policy: Arc<AddressPolicy>,
}

impl tower_service::Service<HyperName> for PolicyDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: HyperName) -> Self::Future {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(allowed_addresses(&policy, host).await?.into_iter()) })
    }
}

/// The addresses `host` resolves to that the policy allows; the policy's refusal when it
/// allows none of them.
async fn allowed_addresses(
    policy: &AddressPolicy,
    host: String,
) -> Result<Vec<SocketAddr>, BoxError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|e| format!("could not resolve {host}: {e}"))?
        .collect();
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match policy.check(&host, a.ip()) {
            Ok(()) => true,
            Err(r) => {
                refusal.get_or_insert(r);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(match refusal {
            Some(r) => Box::new(r) as BoxError,
            None => format!("could not resolve {host}: no addresses").into(),
        });
    }
    Ok(allowed)
}

pub(super) fn find_refusal<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Refusal> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}
