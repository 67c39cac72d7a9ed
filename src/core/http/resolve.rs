//! The resolver every connection goes through (deliveries and token requests), so the address
//! policy judges the addresses the client actually connects to.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::dns::Name as HyperName;
use tokio::sync::watch;

use crate::address::{AddressPolicy, Refusal};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The resolver of hyper's connector: only addresses the policy allows come back, so the
/// client cannot connect anywhere else.
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
    let found = SYSTEM_LOOKUPS.lookup(&host, system_lookup).await?;
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
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

/// The system resolver (getaddrinfo: /etc/hosts, nsswitch, resolv.conf), as libpq uses it.
fn system_lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, 0).to_socket_addrs()?.collect())
}

/// What a lookup found, or why it found nothing; shared by every request waiting for it.
type Found = Result<Arc<[SocketAddr]>, String>;

/// The lookups of this process that have not answered yet, one per host name; names are slow
/// once a lookup of theirs took a second, and at most 64 lookups of slow names run at once.
static SYSTEM_LOOKUPS: Lookups = Lookups::new(Duration::from_secs(1), 64);

/// The most names remembered as slow (the oldest forgotten first).
const SLOW_NAMES: usize = 10_000;

/// Lookups shared by name: a request for a name whose lookup is still running waits for that
/// lookup instead of starting another. getaddrinfo cannot be stopped: a lookup goes on, on a
/// thread of the runtime's blocking pool (512 at most), after the request that started it timed
/// out. Without sharing, a subscription whose name answers slowly, with a short timeout and no
/// delay between retries, started lookups faster than they ended and took every thread of the
/// pool: no other subscription's name was looked up until they ended. Now a name holds at most
/// one thread at a time, however many requests wait for it; and names whose last lookup was
/// slow share `max_slow` threads between them, so that many of them (a subscriber's wildcard
/// zone, one name per subscription) cannot take the pool from names that answer.
pub(crate) struct Lookups {
    state: Mutex<State>,
    /// How long a lookup takes for its name to be slow.
    slow_after: Duration,
    max_slow: usize,
}

struct State {
    running: BTreeMap<String, watch::Receiver<Option<Found>>>,
    /// Names whose last lookup was slow, with when it ended (oldest forgotten first).
    slow: BTreeMap<String, Instant>,
    /// Lookups of slow names running now.
    slow_running: usize,
}

impl Lookups {
    pub(crate) const fn new(slow_after: Duration, max_slow: usize) -> Lookups {
        Lookups {
            state: Mutex::new(State {
                running: BTreeMap::new(),
                slow: BTreeMap::new(),
                slow_running: 0,
            }),
            slow_after,
            max_slow,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses `host` has, by `resolve` run on the blocking pool, or joined if a lookup
    /// of `host` is running. A new lookup starts only once the running one has answered (no
    /// answer is kept: the next request after it looks up again); for a slow name, only while
    /// fewer than `max_slow` lookups of slow names run (else it fails at once, and is retried
    /// on its subscription's schedule).
    pub(crate) async fn lookup(
        &'static self,
        host: &str,
        resolve: fn(&str) -> std::io::Result<Vec<SocketAddr>>,
    ) -> Result<Arc<[SocketAddr]>, String> {
        let mut answer = self.join_or_start(host, resolve)?;
        let found = answer
            .wait_for(Option::is_some)
            .await
            .map_err(|_| format!("could not resolve {host}: the lookup ended without an answer"))?
            .clone();
        found.unwrap_or_else(|| Err(format!("could not resolve {host}: no answer")))
    }

    /// The answer of the running lookup of `host`, or of one started now.
    fn join_or_start(
        &'static self,
        host: &str,
        resolve: fn(&str) -> std::io::Result<Vec<SocketAddr>>,
    ) -> Result<watch::Receiver<Option<Found>>, String> {
        let (tell, answer, slow) = {
            let mut state = self.state();
            if let Some(answer) = state.running.get(host) {
                return Ok(answer.clone());
            }
            let slow = state.slow.contains_key(host);
            if slow && state.slow_running >= self.max_slow {
                return Err(format!(
                    "could not resolve {host}: its last lookup took over {} ms, and {} lookups of such names are running already",
                    self.slow_after.as_millis(),
                    state.slow_running
                ));
            }
            state.slow_running += usize::from(slow);
            let (tell, answer) = watch::channel(None);
            state.running.insert(host.to_string(), answer.clone());
            (tell, answer, slow)
        };
        // Spawned with the lock released: a runtime shutting down drops the task at once, on
        // this thread, and `Running`'s drop takes the lock (held, it deadlocked).
        let done = Running {
            lookups: self,
            host: host.to_string(),
            slow,
            started: Instant::now(),
        };
        // Nothing waits for the task itself: its answer goes through the channel, and it runs
        // to its end even when every request waiting for it has gone.
        drop(tokio::task::spawn_blocking(move || {
            let found = resolve(&done.host)
                .map(Arc::from)
                .map_err(|e| format!("could not resolve {}: {e}", done.host));
            // Gone from `running` before the answer goes out, so a request that comes after the
            // answer looks up again instead of joining a finished lookup.
            drop(done);
            tell.send_replace(Some(found));
        }));
        Ok(answer)
    }

    /// How many names are being looked up now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.state().running.len()
    }
}

/// A running lookup: dropped when it has answered (or its thread unwound), it leaves `running`,
/// and its name is slow or not by how long it took.
struct Running {
    lookups: &'static Lookups,
    host: String,
    /// Its name was slow when it started (it counts in `slow_running`).
    slow: bool,
    started: Instant,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.lookups.state();
        state.running.remove(&self.host);
        state.slow_running -= usize::from(self.slow);
        if self.started.elapsed() < self.lookups.slow_after {
            state.slow.remove(&self.host);
            return;
        }
        if state.slow.len() >= SLOW_NAMES && !state.slow.contains_key(&self.host) {
            let oldest = (state.slow.iter())
                .min_by_key(|(_, at)| **at)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                state.slow.remove(&oldest);
            }
        }
        state.slow.insert(self.host.clone(), Instant::now());
    }
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

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
